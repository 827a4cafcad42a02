//! Object ids shaped like Stripe's: a prefix and random base62 characters.

use rand::Rng;

const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

pub fn random_chars(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// `cus_`, `prod_` and the like get 14 characters; objects Stripe numbers with a leading `1`
/// (prices, subscriptions, invoices, events) get 24, as in Stripe's own examples.
pub fn new_id(prefix: &str) -> String {
    let len = match prefix {
        "cus" | "prod" | "si" | "bps" | "req" | "we" => 14,
        "cs_test" => 58,
        "whsec" => 32,
        _ => 24,
    };
    let body = random_chars(len);
    if len == 24 {
        format!("{prefix}_1{}", &body[1..])
    } else {
        format!("{prefix}_{body}")
    }
}

/// Invoice number prefixes are eight upper-case hex-ish characters.
pub fn invoice_prefix() -> String {
    let mut rng = rand::rng();
    (0..8)
        .map(|_| b"0123456789ABCDEF"[rng.random_range(0..16)] as char)
        .collect()
}
