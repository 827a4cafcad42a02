//! A `POST /api/usage/events` body: JSON, the batch decoder and every event's checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    thanotopolis_billing::fuzzing::usage_batch(data);
});
