//! The market's typed refusals. At the module boundary each becomes
//! `ChainError::Module { module: "market", reason }`, so a transaction's
//! receipt says exactly why it did nothing.

use ios_chain::types::{Amount, Height};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MarketError {
    #[error("no listing {0}")]
    UnknownListing(String),
    #[error("no order {0}")]
    UnknownOrder(String),
    #[error("no dispute for order {0}")]
    UnknownDispute(String),
    #[error("only {role} may {action}")]
    NotAllowed {
        role: &'static str,
        action: &'static str,
    },
    #[error("cannot {action} an order that is {state}")]
    WrongState {
        action: &'static str,
        state: &'static str,
    },
    #[error("the deadline to {action} was block {deadline}; this is block {now}")]
    TooLate {
        action: &'static str,
        deadline: Height,
        now: Height,
    },
    #[error("cannot {action} before block {from}; this is block {now}")]
    TooEarly {
        action: &'static str,
        from: Height,
        now: Height,
    },
    #[error("{what} is {len} bytes, over the limit of {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("a price of {price} is below the minimum of {min}")]
    PriceTooLow { price: Amount, min: Amount },
    #[error("the listing is {0}, not taking orders")]
    NotTakingOrders(&'static str),
    #[error("no rating without a completed or resolved order")]
    NotRateable,
    #[error("this side already {0} a rating for this order")]
    AlreadyRated(&'static str),
    #[error("no rating was committed by this side for this order")]
    NotCommitted,
    #[error("the revealed rating does not match its commitment")]
    CommitmentMismatch,
    #[error("the rated side already responded")]
    AlreadyResponded,
    #[error("not drawn as a juror of this dispute")]
    NotJuror,
    #[error("this juror already {0}")]
    AlreadyVoted(&'static str),
}
