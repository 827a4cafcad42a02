use serde::{Deserialize, Serialize};
use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign};

/// An amount of money in integer cents. There is no floating point anywhere near an amount.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
#[schema(example = 29900)]
pub struct Cents(pub i64);

impl Cents {
    pub const ZERO: Cents = Cents(0);

    /// `quantity * rate_cents / per`, rounded half up to a whole cent.
    ///
    /// This is the one place the billing rule's rounding lives: the rate applies to the period's total,
    /// never per event. Computed in i128 so that no realistic quantity can overflow.
    pub fn rate_half_up(quantity: i64, rate_cents: i64, per: i64) -> Cents {
        assert!(per > 0, "rate denominator must be positive");
        assert!(
            quantity >= 0 && rate_cents >= 0,
            "quantities and rates are never negative"
        );
        let numerator = quantity as i128 * rate_cents as i128;
        let per = per as i128;
        let rounded = (numerator * 2 + per) / (per * 2);
        Cents(i64::try_from(rounded).expect("amount exceeds i64 cents"))
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl Add for Cents {
    type Output = Cents;
    fn add(self, rhs: Cents) -> Cents {
        Cents(self.0.checked_add(rhs.0).expect("cents overflow"))
    }
}

impl AddAssign for Cents {
    fn add_assign(&mut self, rhs: Cents) {
        *self = *self + rhs;
    }
}

impl Sum for Cents {
    fn sum<I: Iterator<Item = Cents>>(iter: I) -> Cents {
        iter.fold(Cents::ZERO, Add::add)
    }
}

/// `$1,234.56`, for pages and reports.
impl fmt::Display for Cents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}${}.{:02}", group_thousands(abs / 100), abs % 100)
    }
}

/// `12345` -> `12,345`.
pub fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_follows_the_worked_examples() {
        assert_eq!(Cents::rate_half_up(12_345, 100, 1000), Cents(1235));
        assert_eq!(Cents::rate_half_up(290, 100, 1000), Cents(29));
        assert_eq!(Cents::rate_half_up(4, 100, 1000), Cents(0));
        assert_eq!(Cents::rate_half_up(5, 100, 1000), Cents(1));
        assert_eq!(Cents::rate_half_up(0, 100, 1000), Cents(0));
    }

    #[test]
    fn displays_dollars_with_separators() {
        assert_eq!(Cents(29900).to_string(), "$299.00");
        assert_eq!(Cents(123_456_789).to_string(), "$1,234,567.89");
        assert_eq!(Cents(5).to_string(), "$0.05");
        assert_eq!(group_thousands(1000), "1,000");
        assert_eq!(group_thousands(999), "999");
    }
}
