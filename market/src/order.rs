//! The order lifecycle as a pure state machine. Each state that allows a
//! move is its own type, and each move is a method that consumes it: the
//! precondition (which state) is in the type, the deadline is checked by
//! the method, and the result says what happens to the escrowed money.
//!
//! ```text
//! Funded --accept--> Accepted --deliver--> Delivered --confirm / review over--> Completed
//!    |                  |                      |
//!    +-decline-> Declined (refund)             +--dispute--> Disputed --verdict--> Resolved (split)
//!    +-accept-by passed-> Expired (refund)
//!                       +-cancel-> Cancelled (refund)
//!                       +-deliver-by passed-> Late (refund)
//! ```
//!
//! [`Order::step`] dispatches an [`Action`] by the current state and checks
//! who may take it; the market module applies the returned [`Money`].

use crate::error::MarketError;
use borsh::{BorshDeserialize, BorshSerialize};
use ios_chain::crypto::Address;
use ios_chain::hash::Hash;
use ios_chain::types::{Amount, Height, Ppm, PPM};
use ios_storage::ContentId;
use serde::Serialize;

/// Waiting for the provider, who must accept by `accept_by`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Funded {
    pub accept_by: Height,
}

/// Accepted; the provider must deliver by `deliver_by`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Accepted {
    pub accepted: Height,
    pub deliver_by: Height,
}

/// Delivered; the buyer may confirm or dispute until `review_by`, after
/// which the order completes by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Delivered {
    /// The delivery: a HUDS object encrypted to the buyer.
    pub delivery: ContentId,
    pub delivered: Height,
    pub review_by: Height,
}

/// Disputed by one side at `opened`, waiting for the jury.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Disputed {
    pub delivery: ContentId,
    pub opened: Height,
    pub by: Side,
}

/// An end state and the block it was reached in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Ended {
    pub at: Height,
}

/// Completed: the provider was paid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Completed {
    pub at: Height,
    /// By the review window running out rather than the buyer's confirmation.
    pub automatic: bool,
}

/// Resolved by a jury: the buyer got `buyer_share` (ppm) of the price back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Resolved {
    pub at: Height,
    pub buyer_share: Ppm,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum OrderState {
    Funded(Funded),
    Accepted(Accepted),
    Declined(Ended),
    Expired(Ended),
    Cancelled(Ended),
    Late(Ended),
    Delivered(Delivered),
    Completed(Completed),
    Disputed(Disputed),
    Resolved(Resolved),
}

impl OrderState {
    pub fn name(&self) -> &'static str {
        match self {
            OrderState::Funded(_) => "funded",
            OrderState::Accepted(_) => "accepted",
            OrderState::Declined(_) => "declined",
            OrderState::Expired(_) => "expired",
            OrderState::Cancelled(_) => "cancelled",
            OrderState::Late(_) => "late",
            OrderState::Delivered(_) => "delivered",
            OrderState::Completed(_) => "completed",
            OrderState::Disputed(_) => "disputed",
            OrderState::Resolved(_) => "resolved",
        }
    }

    /// The block from which the order moves by itself, if it does.
    pub fn due(&self) -> Option<Height> {
        match self {
            OrderState::Funded(s) => Some(s.accept_by.saturating_add(1)),
            OrderState::Accepted(s) => Some(s.deliver_by.saturating_add(1)),
            OrderState::Delivered(s) => Some(s.review_by.saturating_add(1)),
            _ => None,
        }
    }

    /// When ratings may start, for an order that can be rated.
    pub fn rateable_since(&self) -> Option<Height> {
        match self {
            OrderState::Completed(s) => Some(s.at),
            OrderState::Resolved(s) => Some(s.at),
            _ => None,
        }
    }

    pub fn is_final(&self) -> bool {
        !matches!(
            self,
            OrderState::Funded(_)
                | OrderState::Accepted(_)
                | OrderState::Delivered(_)
                | OrderState::Disputed(_)
        )
    }
}

/// One party of an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Buyer,
    Provider,
}

/// Where escrowed money goes as the result of a move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Money {
    /// Nothing moves.
    Stay,
    /// All of the escrow back to the buyer.
    Refund(Amount),
    /// The price less commission to the provider, the commission to the fee pool.
    Pay {
        provider: Amount,
        commission: Amount,
    },
    /// A verdict: the jury's fee to the jurors, of the rest the buyer's
    /// share back to the buyer, and what remains split as in `Pay`.
    Split {
        buyer: Amount,
        provider: Amount,
        commission: Amount,
        jury: Amount,
    },
}

/// Timing constants a move needs (from the market's parameters and the listing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Windows {
    pub delivery_blocks: Height,
    pub review_blocks: Height,
    pub commission: Ppm,
    /// Share of a disputed order's price that pays its jury, ppm.
    pub jury_fee: Ppm,
}

impl Funded {
    pub fn accept(self, now: Height, w: &Windows) -> Result<Accepted, MarketError> {
        if now > self.accept_by {
            return Err(MarketError::TooLate {
                action: "accept",
                deadline: self.accept_by,
                now,
            });
        }
        Ok(Accepted {
            accepted: now,
            deliver_by: now.saturating_add(w.delivery_blocks),
        })
    }

    pub fn decline(self, now: Height) -> Ended {
        Ended { at: now }
    }

    pub fn expire(self, now: Height) -> Result<Ended, MarketError> {
        if now <= self.accept_by {
            return Err(MarketError::TooEarly {
                action: "expire",
                from: self.accept_by + 1,
                now,
            });
        }
        Ok(Ended { at: now })
    }
}

impl Accepted {
    pub fn deliver(
        self,
        now: Height,
        delivery: ContentId,
        w: &Windows,
    ) -> Result<Delivered, MarketError> {
        if now > self.deliver_by {
            return Err(MarketError::TooLate {
                action: "deliver",
                deadline: self.deliver_by,
                now,
            });
        }
        Ok(Delivered {
            delivery,
            delivered: now,
            review_by: now.saturating_add(w.review_blocks),
        })
    }

    pub fn cancel(self, now: Height) -> Ended {
        Ended { at: now }
    }

    pub fn late(self, now: Height) -> Result<Ended, MarketError> {
        if now <= self.deliver_by {
            return Err(MarketError::TooEarly {
                action: "declare late",
                from: self.deliver_by + 1,
                now,
            });
        }
        Ok(Ended { at: now })
    }
}

impl Delivered {
    pub fn confirm(self, now: Height) -> Completed {
        Completed {
            at: now,
            automatic: false,
        }
    }

    pub fn review_over(self, now: Height) -> Result<Completed, MarketError> {
        if now <= self.review_by {
            return Err(MarketError::TooEarly {
                action: "complete",
                from: self.review_by + 1,
                now,
            });
        }
        Ok(Completed {
            at: now,
            automatic: true,
        })
    }

    pub fn dispute(self, now: Height, by: Side) -> Result<Disputed, MarketError> {
        if now > self.review_by {
            return Err(MarketError::TooLate {
                action: "dispute",
                deadline: self.review_by,
                now,
            });
        }
        Ok(Disputed {
            delivery: self.delivery,
            opened: now,
            by,
        })
    }
}

impl Disputed {
    pub fn resolve(self, now: Height, buyer_share: Ppm) -> Resolved {
        Resolved {
            at: now,
            buyer_share: buyer_share.min(PPM as Ppm),
        }
    }
}

/// A move, by a party or by the chain itself (deadlines).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Accept,
    Decline,
    Cancel,
    Deliver(ContentId),
    Confirm,
    Dispute,
    /// The chain's move once a deadline has passed (expire, late, complete).
    Deadline,
    /// A jury's verdict: the buyer's share in ppm.
    Verdict(Ppm),
}

impl Action {
    fn name(&self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::Decline => "decline",
            Action::Cancel => "cancel",
            Action::Deliver(_) => "deliver",
            Action::Confirm => "confirm",
            Action::Dispute => "dispute",
            Action::Deadline => "settle by deadline",
            Action::Verdict(_) => "resolve",
        }
    }
}

/// Who takes a move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor {
    Party(Side),
    /// Anyone else: a stranger may take no move.
    Stranger,
    /// The chain: deadlines and verdicts.
    Chain,
}

/// An order as kept on chain. Its escrow (`price`) is held by the market
/// module from placement until an end state pays it out, exactly once.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Order {
    pub id: Hash,
    pub listing: Hash,
    pub buyer: Address,
    pub provider: Address,
    pub price: Amount,
    pub placed: Height,
    /// The listing's delivery time when the order was placed: what the
    /// buyer agreed to, whatever the listing says later.
    pub delivery_blocks: Height,
    pub state: OrderState,
}

impl Order {
    pub fn side_of(&self, who: &Address) -> Option<Side> {
        if *who == self.buyer {
            Some(Side::Buyer)
        } else if *who == self.provider {
            Some(Side::Provider)
        } else {
            None
        }
    }

    pub fn actor(&self, who: &Address) -> Actor {
        self.side_of(who).map_or(Actor::Stranger, Actor::Party)
    }

    /// The commission on this order's price.
    pub fn commission(&self, w: &Windows) -> Amount {
        (self.price as u128 * w.commission.min(PPM as Ppm) as u128 / PPM as u128) as Amount
    }

    /// Takes `action` by `actor` at block `now`: the next state and what the
    /// escrow does. Refused moves change nothing (the order is taken by value
    /// and only returned on success).
    pub fn step(
        &self,
        action: Action,
        actor: Actor,
        now: Height,
        w: &Windows,
    ) -> Result<(OrderState, Money), MarketError> {
        use Side::{Buyer, Provider};
        let wrong = || MarketError::WrongState {
            action: action.name(),
            state: self.state.name(),
        };
        let only = |role: &'static str, ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(MarketError::NotAllowed {
                    role,
                    action: action.name(),
                })
            }
        };
        let pay = || {
            let commission = self.commission(w);
            Money::Pay {
                provider: self.price - commission,
                commission,
            }
        };
        let refund = Money::Refund(self.price);
        Ok(match (self.state, action) {
            (OrderState::Funded(s), Action::Accept) => {
                only("the provider", actor == Actor::Party(Provider))?;
                (OrderState::Accepted(s.accept(now, w)?), Money::Stay)
            }
            (OrderState::Funded(s), Action::Decline) => {
                only("the provider", actor == Actor::Party(Provider))?;
                (OrderState::Declined(s.decline(now)), refund)
            }
            (OrderState::Funded(s), Action::Deadline) => {
                only("the chain", actor == Actor::Chain)?;
                (OrderState::Expired(s.expire(now)?), refund)
            }
            (OrderState::Accepted(s), Action::Deliver(delivery)) => {
                only("the provider", actor == Actor::Party(Provider))?;
                (
                    OrderState::Delivered(s.deliver(now, delivery, w)?),
                    Money::Stay,
                )
            }
            (OrderState::Accepted(s), Action::Cancel) => {
                only("the provider", actor == Actor::Party(Provider))?;
                (OrderState::Cancelled(s.cancel(now)), refund)
            }
            (OrderState::Accepted(s), Action::Deadline) => {
                only("the chain", actor == Actor::Chain)?;
                (OrderState::Late(s.late(now)?), refund)
            }
            (OrderState::Delivered(s), Action::Confirm) => {
                only("the buyer", actor == Actor::Party(Buyer))?;
                (OrderState::Completed(s.confirm(now)), pay())
            }
            (OrderState::Delivered(s), Action::Dispute) => {
                let Actor::Party(by) = actor else {
                    return Err(MarketError::NotAllowed {
                        role: "the buyer or the provider",
                        action: action.name(),
                    });
                };
                (OrderState::Disputed(s.dispute(now, by)?), Money::Stay)
            }
            (OrderState::Delivered(s), Action::Deadline) => {
                only("the chain", actor == Actor::Chain)?;
                (OrderState::Completed(s.review_over(now)?), pay())
            }
            (OrderState::Disputed(s), Action::Verdict(share)) => {
                only("the jury", actor == Actor::Chain)?;
                let r = s.resolve(now, share);
                let part = |of: Amount, ppm: Ppm| {
                    (of as u128 * ppm.min(PPM as Ppm) as u128 / PPM as u128) as Amount
                };
                let jury = part(self.price, w.jury_fee);
                let rest = self.price - jury;
                let buyer = part(rest, r.buyer_share);
                let commission = part(rest - buyer, w.commission);
                (
                    OrderState::Resolved(r),
                    Money::Split {
                        buyer,
                        provider: rest - buyer - commission,
                        commission,
                        jury,
                    },
                )
            }
            _ => return Err(wrong()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Windows = Windows {
        delivery_blocks: 100,
        review_blocks: 50,
        commission: 20_000,
        jury_fee: 50_000,
    };

    fn order() -> Order {
        Order {
            id: Hash([9; 32]),
            listing: Hash([8; 32]),
            buyer: Address([1; 32]),
            provider: Address([2; 32]),
            price: 1_000_000,
            placed: 10,
            delivery_blocks: 100,
            state: OrderState::Funded(Funded { accept_by: 20 }),
        }
    }

    fn go(o: &mut Order, a: Action, by: Actor, now: Height) -> Result<Money, MarketError> {
        let (s, m) = o.step(a, by, now, &W)?;
        o.state = s;
        Ok(m)
    }

    const BUYER: Actor = Actor::Party(Side::Buyer);
    const PROVIDER: Actor = Actor::Party(Side::Provider);

    #[test]
    fn the_happy_path_pays_the_provider_less_commission() {
        let mut o = order();
        assert_eq!(go(&mut o, Action::Accept, PROVIDER, 15), Ok(Money::Stay));
        assert_eq!(o.state.due(), Some(116));
        let cid = ContentId(Hash([5; 32]));
        assert_eq!(
            go(&mut o, Action::Deliver(cid), PROVIDER, 30),
            Ok(Money::Stay)
        );
        assert_eq!(
            go(&mut o, Action::Confirm, BUYER, 31),
            Ok(Money::Pay {
                provider: 980_000,
                commission: 20_000
            })
        );
        assert_eq!(o.state.rateable_since(), Some(31));
        assert!(o.state.is_final());
        // Nothing moves a completed order.
        for a in [
            Action::Confirm,
            Action::Deadline,
            Action::Dispute,
            Action::Cancel,
        ] {
            assert!(matches!(
                o.step(a, BUYER, 40, &W),
                Err(MarketError::WrongState { .. })
            ));
        }
    }

    #[test]
    fn deadlines_refund_or_complete_and_are_refused_early() {
        let mut o = order();
        assert!(matches!(
            go(&mut o, Action::Deadline, Actor::Chain, 20),
            Err(MarketError::TooEarly { .. })
        ));
        assert_eq!(
            go(&mut o, Action::Deadline, Actor::Chain, 21),
            Ok(Money::Refund(1_000_000))
        );
        assert_eq!(o.state, OrderState::Expired(Ended { at: 21 }));

        let mut o = order();
        assert!(matches!(
            go(&mut o, Action::Accept, PROVIDER, 21),
            Err(MarketError::TooLate { .. })
        ));
        go(&mut o, Action::Accept, PROVIDER, 20).unwrap();
        assert_eq!(
            go(&mut o, Action::Deadline, Actor::Chain, 121),
            Ok(Money::Refund(1_000_000))
        );
        assert_eq!(o.state.name(), "late");

        let mut o = order();
        go(&mut o, Action::Accept, PROVIDER, 20).unwrap();
        go(&mut o, Action::Deliver(ContentId::default()), PROVIDER, 120).unwrap();
        assert!(matches!(
            go(&mut o, Action::Dispute, BUYER, 171),
            Err(MarketError::TooLate { .. })
        ));
        assert!(matches!(
            go(&mut o, Action::Deadline, Actor::Chain, 171),
            Ok(Money::Pay { .. })
        ));
        assert!(matches!(
            o.state,
            OrderState::Completed(Completed {
                automatic: true,
                ..
            })
        ));
    }

    #[test]
    fn only_the_right_party_moves_and_a_refusal_changes_nothing() {
        let stranger = Actor::Stranger;
        let o = order();
        for (a, by) in [
            (Action::Accept, BUYER),
            (Action::Accept, stranger),
            (Action::Decline, BUYER),
            (Action::Deadline, PROVIDER),
        ] {
            assert!(matches!(
                o.step(a, by, 15, &W),
                Err(MarketError::NotAllowed { .. })
            ));
        }
        let mut o = order();
        go(&mut o, Action::Accept, PROVIDER, 15).unwrap();
        go(&mut o, Action::Deliver(ContentId::default()), PROVIDER, 16).unwrap();
        let before = o.clone();
        assert!(o.step(Action::Confirm, PROVIDER, 17, &W).is_err());
        assert!(o.step(Action::Dispute, stranger, 17, &W).is_err());
        assert!(o.step(Action::Verdict(0), BUYER, 17, &W).is_err());
        assert_eq!(o, before);
        assert_eq!(go(&mut o, Action::Dispute, PROVIDER, 17), Ok(Money::Stay));
        assert_eq!(
            go(&mut o, Action::Verdict(250_000), Actor::Chain, 30),
            Ok(Money::Split {
                buyer: 237_500,
                provider: 698_250,
                commission: 14_250,
                jury: 50_000,
            })
        );
    }

    #[test]
    fn every_path_pays_the_escrow_out_exactly_once() {
        // Every sequence of actions from Funded: the sum of payouts is the
        // price when the order ends, zero before.
        let actions = [
            Action::Accept,
            Action::Decline,
            Action::Cancel,
            Action::Deliver(ContentId::default()),
            Action::Confirm,
            Action::Dispute,
            Action::Deadline,
            Action::Verdict(333_333),
        ];
        let actors = [BUYER, PROVIDER, Actor::Chain, Actor::Stranger];
        fn walk(o: &Order, depth: u32, paid: Amount, actions: &[Action], actors: &[Actor]) {
            assert_eq!(
                o.state.is_final(),
                paid == o.price,
                "{:?} paid {paid}",
                o.state
            );
            if depth == 0 {
                return;
            }
            for a in actions {
                for by in actors {
                    for now in [15, 200, 400] {
                        if let Ok((s, m)) = o.step(*a, *by, now, &W) {
                            let out = match m {
                                Money::Stay => 0,
                                Money::Refund(r) => r,
                                Money::Pay {
                                    provider,
                                    commission,
                                } => provider + commission,
                                Money::Split {
                                    buyer,
                                    provider,
                                    commission,
                                    jury,
                                } => buyer + provider + commission + jury,
                            };
                            let next = Order {
                                state: s,
                                ..o.clone()
                            };
                            walk(&next, depth - 1, paid + out, actions, actors);
                        }
                    }
                }
            }
        }
        walk(&order(), 5, 0, &actions, &actors);
    }
}
