//! Budgets (draft-hardt-aauth-budgets): an amount in a unit at a declared scale, carried
//! like a scope: offered in a resource token, granted (never more) in an auth token.

use serde::{Deserialize, Serialize};

/// The largest `amount` an issuer may grant (15 digits: representable both as a JSON
/// number and as a Structured Field Integer).
pub const BUDGET_AMOUNT_MAX: u64 = 999_999_999_999_999;

/// A budget object: `amount / 10^decimals` of `unit`.
///
/// ```
/// use aauth_tokens::Budget;
///
/// let five_dollars = Budget::new(5_000_000, "USD", 6).unwrap();
/// assert_eq!(five_dollars.to_string(), "5.00 USD");
/// assert_eq!(Budget::new(431_200, "USD", 6).unwrap().to_string(), "0.4312 USD");
/// assert_eq!(Budget::new(1200, "tokens", 0).unwrap().to_string(), "1200 tokens");
/// assert!(Budget::new(1, "", 0).is_err());
/// assert!(Budget::new(10u64.pow(15), "USD", 6).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Budget {
    /// A non-negative integer, at most [`BUDGET_AMOUNT_MAX`].
    pub amount: u64,
    /// What is metered (an ISO 4217 code for a currency).
    pub unit: String,
    /// The scale of `amount` (at most 18).
    pub decimals: u8,
}

/// Why a budget object is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("budget: {0}")]
pub struct BudgetError(pub &'static str);

impl Budget {
    /// A checked budget.
    ///
    /// # Errors
    ///
    /// [`BudgetError`] for an amount over [`BUDGET_AMOUNT_MAX`], an empty or over-long
    /// (32) unit or one with other than printable ASCII, or more than 18 decimals.
    pub fn new(amount: u64, unit: impl Into<String>, decimals: u8) -> Result<Self, BudgetError> {
        let b = Self {
            amount,
            unit: unit.into(),
            decimals,
        };
        b.check().map(|()| b)
    }

    /// The same rules as [`Budget::new`], for a budget read from a token.
    ///
    /// # Errors
    ///
    /// [`BudgetError`].
    pub fn check(&self) -> Result<(), BudgetError> {
        if self.amount > BUDGET_AMOUNT_MAX {
            return Err(BudgetError("amount exceeds 15 digits"));
        }
        if self.unit.is_empty()
            || self.unit.len() > 32
            || !self.unit.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(BudgetError(
                "unit must be 1 to 32 printable ASCII characters",
            ));
        }
        if self.decimals > 18 {
            return Err(BudgetError("decimals must be at most 18"));
        }
        Ok(())
    }

    /// Whether `other` is in the same denomination (unit and scale).
    #[must_use]
    pub fn same_denomination(&self, other: &Self) -> bool {
        self.unit == other.unit && self.decimals == other.decimals
    }

    /// This budget with `amount` instead (same denomination).
    #[must_use]
    pub fn with_amount(&self, amount: u64) -> Self {
        Self {
            amount,
            unit: self.unit.clone(),
            decimals: self.decimals,
        }
    }
}

impl std::fmt::Display for Budget {
    /// A human-readable figure: the value with at least two decimals when the scale has
    /// them, trailing zeros beyond those trimmed, then the unit.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = usize::from(self.decimals);
        if d == 0 {
            return write!(f, "{} {}", self.amount, self.unit);
        }
        let digits = format!("{:0>width$}", self.amount, width = d + 1);
        let (whole, frac) = digits.split_at(digits.len() - d);
        let keep = frac.trim_end_matches('0').len().max(2.min(d));
        write!(f, "{whole}.{} {}", &frac[..keep], self.unit)
    }
}

/// A consumption record of a resource token's `budget_consumed`: what the resource
/// metered against a prior auth token, in the resource token's budget denomination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Consumption {
    /// The prior auth token's `jti`.
    pub jti: String,
    /// What was metered against it.
    pub consumed: u64,
}

impl Consumption {
    /// A record.
    #[must_use]
    pub fn new(jti: impl Into<String>, consumed: u64) -> Self {
        Self {
            jti: jti.into(),
            consumed,
        }
    }
}
