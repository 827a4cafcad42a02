//! A `Stripe-Signature` header line, then a body: parse_header and verify.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    thanotopolis_billing::fuzzing::stripe_signature(data);
});
