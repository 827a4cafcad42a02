//! Whole numbers as clients write them in JSON: `3` or `3.0`, read the same by the API's bodies and the
//! usage events' fields.

/// A JSON number that is a whole number: `3` or `3.0` (JSON does not tell them apart, and JSON Schema's
/// `integer` accepts both).
pub fn as_whole_number(v: &serde_json::Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        let f = v.as_f64()?;
        // Within ±2^53 every whole f64 is exact, so the conversion below is too.
        (f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0).then_some(f as i64)
    })
}

/// Deserializes an optional whole number that a client may have written as `25.0`.
pub fn whole_number<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i64>,
{
    use serde::de::{Deserialize, Error};
    let v = Option::<serde_json::Value>::deserialize(deserializer)?;
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => as_whole_number(&v)
            .and_then(|n| T::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("expected a whole number in range, got {v}"))),
    }
}
