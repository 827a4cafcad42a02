//! A webhook body: the event decoder and the typed objects the handlers read.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    thanotopolis_billing::fuzzing::webhook_event(data);
});
