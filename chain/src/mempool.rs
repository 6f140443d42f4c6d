//! Transaction mempool: the pending transactions waiting for a block.
//!
//! The pool owns admission (after the caller has already checked signature and
//! chain id), the order in which a block builder takes transactions, and
//! eviction when it is full. It is generic over [`PoolTx`] so it does not
//! depend on the ledger's own transaction type. Every decision is
//! deterministic, so that two nodes holding the same pool build the same
//! block: only ordered collections are iterated, every tie is broken by the
//! transaction id, fee-per-byte is compared by cross-multiplication in integer
//! arithmetic (never floating point), and there is no clock or randomness —
//! heights and account nonces are passed in by the caller.
//!
//! Admission, replacement, eviction and commit pruning cost `O(log n)` per
//! transaction touched. [`Mempool::select`] costs `O(s log s + k log n)` for
//! `s` pending senders and `k` selected transactions.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::ops::Bound;

/// What the pool needs to know about a transaction. Implementations must
/// return the same values every time they are called on the same transaction.
pub trait PoolTx: Clone {
    /// Unique identity (normally the transaction hash); the final tie-break.
    type Id: Ord + Copy + std::fmt::Debug;
    /// Account whose nonce sequence the transaction belongs to.
    type Sender: Ord + Copy + std::fmt::Debug;
    fn id(&self) -> Self::Id;
    fn sender(&self) -> Self::Sender;
    fn nonce(&self) -> u64;
    fn fee(&self) -> u64;
    fn encoded_len(&self) -> usize;
    /// Last block height at which the transaction may be included.
    fn expires_at(&self) -> u64;
}

/// Limits and prices; the defaults suit a public node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MempoolConfig {
    /// Most transactions held at once.
    pub max_txs: usize,
    /// Most encoded bytes held at once.
    pub max_bytes: usize,
    /// Largest single transaction accepted.
    pub max_tx_bytes: usize,
    /// Most transactions held for one sender, so one account cannot fill the pool.
    pub max_per_account: usize,
    /// How far past the sender's committed nonce a transaction may be, so a
    /// sender cannot park transactions that will not execute for a long time.
    pub max_nonce_gap: u64,
    /// Minimum fee per encoded byte.
    pub min_fee_per_byte: u64,
    /// How much more per byte (in percent) a replacement for the same
    /// (sender, nonce) must pay, so replacements cannot spam the network for free.
    pub replace_bump_percent: u64,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        Self {
            max_txs: 50_000,
            max_bytes: 64 * 1024 * 1024,
            max_tx_bytes: 64 * 1024,
            max_per_account: 256,
            max_nonce_gap: 256,
            min_fee_per_byte: 1,
            replace_bump_percent: 10,
        }
    }
}

/// Why a transaction was not admitted. The pool is left unchanged by every
/// rejection, apart from forgetting the sender's already-stale transactions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MempoolError {
    #[error("transaction is already in the mempool")]
    AlreadyKnown,
    #[error("nonce {nonce} was already used: the account's next nonce is {expected}")]
    NonceTooLow { nonce: u64, expected: u64 },
    #[error("nonce {nonce} is too far ahead of the account's next nonce {expected}")]
    NonceTooFar { nonce: u64, expected: u64 },
    #[error("transaction expired at height {expires_at}, before height {height}")]
    Expired { expires_at: u64, height: u64 },
    #[error("transaction is {len} bytes, more than the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("fee {fee} is below the minimum of {min} for this transaction's size")]
    FeeTooLow { fee: u64, min: u64 },
    #[error("sender already has the maximum of {max} pending transactions")]
    AccountFull { max: usize },
    #[error("mempool is full and the transaction pays too little per byte to evict others")]
    PoolFull,
    #[error("replacement does not pay enough more per byte than the transaction it replaces")]
    ReplacementUnderpriced,
}

/// Fee per byte kept as a fraction, so comparison is exact and platform
/// independent. A zero length counts as one byte.
#[derive(Clone, Copy, Debug)]
struct FeeRate {
    fee: u64,
    len: u64,
}

impl FeeRate {
    fn new(fee: u64, len: usize) -> Self {
        let len = u64::try_from(len).unwrap_or(u64::MAX).max(1);
        Self { fee, len }
    }

    /// `self >= other * (100 + percent) / 100`, exactly.
    fn at_least_bumped(self, other: FeeRate, percent: u64) -> bool {
        let lhs = mul_wide(u128::from(self.fee) * u128::from(other.len), 100);
        let rhs = mul_wide(
            u128::from(other.fee) * u128::from(self.len),
            percent.saturating_add(100),
        );
        lhs >= rhs
    }
}

impl Ord for FeeRate {
    fn cmp(&self, other: &Self) -> Ordering {
        // a/b vs c/d  <=>  a*d vs c*b; both products fit in u128.
        (u128::from(self.fee) * u128::from(other.len))
            .cmp(&(u128::from(other.fee) * u128::from(self.len)))
    }
}

impl PartialOrd for FeeRate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for FeeRate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for FeeRate {}

/// `a * b` as a 256-bit `(high, low)` pair, which compares correctly as a tuple.
fn mul_wide(a: u128, b: u64) -> (u128, u128) {
    let b = u128::from(b);
    let lo = (a & u128::from(u64::MAX)) * b;
    let hi = (a >> 64) * b;
    let (low, carry) = lo.overflowing_add(hi << 64);
    ((hi >> 64) + u128::from(carry), low)
}

/// A pooled transaction with its keys read once, so the indexes can always be
/// cleaned up with exactly the keys they were built with.
struct Entry<T: PoolTx> {
    tx: T,
    sender: T::Sender,
    nonce: u64,
    len: usize,
    rate: FeeRate,
    expires_at: u64,
}

impl<T: PoolTx> Entry<T> {
    fn new(tx: T) -> Self {
        let len = tx.encoded_len();
        Self {
            sender: tx.sender(),
            nonce: tx.nonce(),
            rate: FeeRate::new(tx.fee(), len),
            expires_at: tx.expires_at(),
            len,
            tx,
        }
    }
}

/// A sender's next executable transaction in [`Mempool::select`]'s heap:
/// highest fee-per-byte first, then lowest id.
struct Candidate<I> {
    rate: FeeRate,
    id: I,
}

impl<I: Ord> Ord for Candidate<I> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.rate
            .cmp(&other.rate)
            .then_with(|| other.id.cmp(&self.id))
    }
}

impl<I: Ord> PartialOrd for Candidate<I> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<I: Ord> PartialEq for Candidate<I> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<I: Ord> Eq for Candidate<I> {}

/// The pending transactions, indexed by id, by (sender, nonce), by fee-per-byte
/// (for eviction) and by expiry (for pruning).
pub struct Mempool<T: PoolTx> {
    config: MempoolConfig,
    entries: BTreeMap<T::Id, Entry<T>>,
    by_sender: BTreeMap<T::Sender, BTreeMap<u64, T::Id>>,
    by_rate: BTreeSet<(FeeRate, T::Id)>,
    by_expiry: BTreeSet<(u64, T::Id)>,
    bytes: usize,
}

impl<T: PoolTx> Mempool<T> {
    pub fn new(config: MempoolConfig) -> Self {
        Self {
            config,
            entries: BTreeMap::new(),
            by_sender: BTreeMap::new(),
            by_rate: BTreeSet::new(),
            by_expiry: BTreeSet::new(),
            bytes: 0,
        }
    }

    pub fn config(&self) -> &MempoolConfig {
        &self.config
    }

    /// Admits `tx`, replacing the pooled transaction with the same (sender,
    /// nonce) or evicting the cheapest ones if it pays enough.
    ///
    /// `account_nonce` = the sender's next nonce in committed state; `height` =
    /// the height of the next block. The sender's pooled transactions below
    /// `account_nonce` can never execute, so they are dropped here as well.
    pub fn insert(&mut self, tx: T, account_nonce: u64, height: u64) -> Result<(), MempoolError> {
        if self.entries.contains_key(&tx.id()) {
            return Err(MempoolError::AlreadyKnown);
        }
        let entry = Entry::new(tx);
        let cfg = &self.config;
        if entry.len > cfg.max_tx_bytes {
            return Err(MempoolError::TooLarge {
                len: entry.len,
                max: cfg.max_tx_bytes,
            });
        }
        if entry.expires_at < height {
            return Err(MempoolError::Expired {
                expires_at: entry.expires_at,
                height,
            });
        }
        if entry.nonce < account_nonce {
            return Err(MempoolError::NonceTooLow {
                nonce: entry.nonce,
                expected: account_nonce,
            });
        }
        if entry.nonce - account_nonce > cfg.max_nonce_gap {
            return Err(MempoolError::NonceTooFar {
                nonce: entry.nonce,
                expected: account_nonce,
            });
        }
        let min = u128::from(cfg.min_fee_per_byte) * u128::from(entry.rate.len);
        if u128::from(entry.rate.fee) < min {
            let min = u64::try_from(min).unwrap_or(u64::MAX);
            return Err(MempoolError::FeeTooLow {
                fee: entry.rate.fee,
                min,
            });
        }

        self.prune_below(&entry.sender, account_nonce);
        let pending = self.by_sender.get(&entry.sender);
        let replaced = pending.and_then(|txs| txs.get(&entry.nonce)).copied();
        match replaced {
            Some(old) => {
                let old_rate = self.entries[&old].rate;
                if !entry
                    .rate
                    .at_least_bumped(old_rate, self.config.replace_bump_percent)
                {
                    return Err(MempoolError::ReplacementUnderpriced);
                }
            }
            None => {
                let max = self.config.max_per_account;
                if pending.map_or(0, BTreeMap::len) >= max {
                    return Err(MempoolError::AccountFull { max });
                }
            }
        }

        let evicted = self.plan_eviction(&entry, replaced)?;
        for id in evicted.iter().chain(replaced.iter()) {
            self.remove(id);
        }
        self.add(entry);
        Ok(())
    }

    /// Decides, without changing anything, which transactions must go for
    /// `new` to fit, so that a rejected insert leaves the pool untouched.
    ///
    /// The globally cheapest transaction goes first, and only if it pays
    /// strictly less per byte than `new`. Every higher nonce of its sender goes
    /// with it (highest first), whatever it pays, since it could not execute
    /// without it and no gap is left behind. A victim below `new`'s own nonce
    /// would strand `new`, so that means `PoolFull` too.
    fn plan_eviction(
        &self,
        new: &Entry<T>,
        replaced: Option<T::Id>,
    ) -> Result<Vec<T::Id>, MempoolError> {
        let mut count = self.entries.len() + 1;
        let mut bytes = self.bytes.saturating_add(new.len);
        if let Some(old) = replaced {
            count -= 1;
            bytes -= self.entries[&old].len;
        }
        let fits = |count: usize, bytes: usize| {
            count <= self.config.max_txs && bytes <= self.config.max_bytes
        };
        let mut evicted = Vec::new();
        // Per victim sender: every nonce >= cut is already planned for eviction.
        let mut cuts: BTreeMap<T::Sender, u64> = BTreeMap::new();
        for (rate, id) in &self.by_rate {
            if fits(count, bytes) {
                break;
            }
            if Some(*id) == replaced {
                continue;
            }
            let victim = &self.entries[id];
            let cut = cuts.get(&victim.sender).copied();
            if cut.is_some_and(|cut| victim.nonce >= cut) {
                continue;
            }
            if new.rate <= *rate || (victim.sender == new.sender && victim.nonce < new.nonce) {
                return Err(MempoolError::PoolFull);
            }
            let upper = cut.map_or(Bound::Unbounded, Bound::Excluded);
            let tail = self.by_sender[&victim.sender].range((Bound::Included(victim.nonce), upper));
            for (_, tail_id) in tail.rev() {
                evicted.push(*tail_id);
                count -= 1;
                bytes -= self.entries[tail_id].len;
            }
            cuts.insert(victim.sender, victim.nonce);
        }
        if fits(count, bytes) {
            Ok(evicted)
        } else {
            Err(MempoolError::PoolFull)
        }
    }

    /// Up to `max_count` transactions and `max_bytes` total, in an order that
    /// executes: for every sender, nonces contiguous from `account_nonce(sender)`;
    /// across senders, the next executable transaction with the highest
    /// fee-per-byte first (ties: lowest id). A transaction expired at `height`,
    /// or one that does not fit in the remaining bytes, ends its sender's run,
    /// since anything after it would have a nonce gap.
    pub fn select(
        &self,
        max_count: usize,
        max_bytes: usize,
        height: u64,
        account_nonce: impl Fn(&T::Sender) -> u64,
    ) -> Vec<T> {
        let mut out = Vec::new();
        if max_count == 0 {
            return out;
        }
        let mut heap: BinaryHeap<Candidate<T::Id>> = self
            .by_sender
            .iter()
            .filter_map(|(sender, txs)| self.candidate(txs, account_nonce(sender), height))
            .collect();
        let mut used = 0usize;
        while let Some(Candidate { id, .. }) = heap.pop() {
            let entry = &self.entries[&id];
            if entry.len > max_bytes - used {
                continue;
            }
            used += entry.len;
            out.push(entry.tx.clone());
            if out.len() == max_count {
                break;
            }
            let txs = &self.by_sender[&entry.sender];
            if let Some(next) = entry
                .nonce
                .checked_add(1)
                .and_then(|n| self.candidate(txs, n, height))
            {
                heap.push(next);
            }
        }
        out
    }

    /// The sender's transaction at exactly `nonce`, if it is still includable at `height`.
    fn candidate(
        &self,
        txs: &BTreeMap<u64, T::Id>,
        nonce: u64,
        height: u64,
    ) -> Option<Candidate<T::Id>> {
        let id = *txs.get(&nonce)?;
        let entry = &self.entries[&id];
        (entry.expires_at >= height).then_some(Candidate {
            rate: entry.rate,
            id,
        })
    }

    /// After a block commits: drops transactions whose nonce is below their
    /// sender's new account nonce, and transactions expired at `next_height`.
    /// Only senders in `touched` can have a new nonce, so only theirs is read
    /// (and only if they have pending transactions); expiry applies to all.
    pub fn on_committed(
        &mut self,
        touched: &[T::Sender],
        next_height: u64,
        account_nonce: impl Fn(&T::Sender) -> u64,
    ) {
        for sender in touched {
            if self.by_sender.contains_key(sender) {
                self.prune_below(sender, account_nonce(sender));
            }
        }
        while let Some(&(expires_at, id)) = self.by_expiry.first() {
            if expires_at >= next_height {
                break;
            }
            self.remove(&id);
        }
    }

    /// Removes one transaction, e.g. one found invalid while building a block.
    /// Its sender's later nonces stay, waiting for the gap to be filled.
    pub fn remove(&mut self, id: &T::Id) -> Option<T> {
        let entry = self.entries.remove(id)?;
        self.bytes -= entry.len;
        if let Some(txs) = self.by_sender.get_mut(&entry.sender) {
            txs.remove(&entry.nonce);
            if txs.is_empty() {
                self.by_sender.remove(&entry.sender);
            }
        }
        self.by_rate.remove(&(entry.rate, *id));
        self.by_expiry.remove(&(entry.expires_at, *id));
        Some(entry.tx)
    }

    pub fn contains(&self, id: &T::Id) -> bool {
        self.entries.contains_key(id)
    }

    pub fn get(&self, id: &T::Id) -> Option<&T> {
        self.entries.get(id).map(|entry| &entry.tx)
    }

    /// All pending transactions in id order, e.g. for re-gossip.
    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.entries.values().map(|entry| &entry.tx)
    }

    /// The nonce for `sender`'s next own transaction: the first one from
    /// `account_nonce` on that the pool lacks. Filling a gap (a transaction
    /// lost in transit while later ones arrived by gossip) unblocks the rest.
    pub fn next_nonce(&self, sender: &T::Sender, account_nonce: u64) -> u64 {
        let mut n = account_nonce;
        if let Some(pooled) = self.by_sender.get(sender) {
            for &k in pooled.range(account_nonce..).map(|(k, _)| k) {
                if k != n {
                    break;
                }
                n += 1;
            }
        }
        n
    }

    /// `sender`'s pooled transactions with nonces in `nonces`, in nonce order.
    pub fn sender_range(
        &self,
        sender: &T::Sender,
        nonces: std::ops::Range<u64>,
    ) -> impl Iterator<Item = &T> + '_ {
        self.by_sender
            .get(sender)
            .into_iter()
            .flat_map(move |m| m.range(nonces.clone()))
            .filter_map(|(_, id)| self.entries.get(id).map(|e| &e.tx))
    }

    /// Number of pending transactions of `sender`.
    pub fn sender_len(&self, sender: &T::Sender) -> usize {
        self.by_sender.get(sender).map_or(0, BTreeMap::len)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total encoded bytes of the pending transactions.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn add(&mut self, entry: Entry<T>) {
        let id = entry.tx.id();
        self.bytes += entry.len;
        self.by_sender
            .entry(entry.sender)
            .or_default()
            .insert(entry.nonce, id);
        self.by_rate.insert((entry.rate, id));
        self.by_expiry.insert((entry.expires_at, id));
        self.entries.insert(id, entry);
    }

    fn prune_below(&mut self, sender: &T::Sender, account_nonce: u64) {
        let stale: Vec<T::Id> = match self.by_sender.get(sender) {
            Some(txs) => txs.range(..account_nonce).map(|(_, id)| *id).collect(),
            None => return,
        };
        for id in &stale {
            self.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cell::RefCell;

    const A: u8 = 1;
    const B: u8 = 2;
    const C: u8 = 3;
    const D: u8 = 4;

    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Tx {
        id: u32,
        sender: u8,
        nonce: u64,
        fee: u64,
        len: usize,
        expires_at: u64,
    }

    impl PoolTx for Tx {
        type Id = u32;
        type Sender = u8;
        fn id(&self) -> u32 {
            self.id
        }
        fn sender(&self) -> u8 {
            self.sender
        }
        fn nonce(&self) -> u64 {
            self.nonce
        }
        fn fee(&self) -> u64 {
            self.fee
        }
        fn encoded_len(&self) -> usize {
            self.len
        }
        fn expires_at(&self) -> u64 {
            self.expires_at
        }
    }

    fn tx(id: u32, sender: u8, nonce: u64, fee: u64, len: usize) -> Tx {
        Tx {
            id,
            sender,
            nonce,
            fee,
            len,
            expires_at: u64::MAX,
        }
    }

    /// Fee-per-byte `rate` at 10 bytes.
    fn r(id: u32, sender: u8, nonce: u64, rate: u64) -> Tx {
        tx(id, sender, nonce, rate * 10, 10)
    }

    impl Tx {
        fn exp(mut self, expires_at: u64) -> Self {
            self.expires_at = expires_at;
            self
        }
    }

    fn cfg(f: impl FnOnce(&mut MempoolConfig)) -> MempoolConfig {
        let mut config = MempoolConfig::default();
        f(&mut config);
        config
    }

    fn nonces(table: &[(u8, u64)]) -> impl Fn(&u8) -> u64 + '_ {
        move |s: &u8| {
            table
                .iter()
                .find(|(sender, _)| sender == s)
                .map_or(0, |(_, n)| *n)
        }
    }

    fn ids<'a>(txs: impl IntoIterator<Item = &'a Tx>) -> Vec<u32> {
        txs.into_iter().map(|t| t.id).collect()
    }

    /// A pool holding `setup`, each admitted at account nonce 0 and height 0.
    fn pool(name: &str, config: &MempoolConfig, setup: &[Tx]) -> Mempool<Tx> {
        let mut pool = Mempool::new(config.clone());
        for t in setup {
            assert_eq!(
                pool.insert(t.clone(), 0, 0),
                Ok(()),
                "{name}: setup tx {}",
                t.id
            );
        }
        assert_invariants(&pool);
        pool
    }

    /// Every index agrees with `entries`, and the configured limits hold.
    fn assert_invariants(pool: &Mempool<Tx>) {
        let n = pool.entries.len();
        assert_eq!(pool.len(), n);
        assert_eq!(pool.is_empty(), n == 0);
        assert_eq!(pool.by_rate.len(), n);
        assert_eq!(pool.by_expiry.len(), n);
        assert_eq!(pool.by_sender.values().map(BTreeMap::len).sum::<usize>(), n);
        assert!(pool.by_sender.values().all(|txs| !txs.is_empty()));
        assert_eq!(pool.bytes(), pool.iter().map(|t| t.len).sum::<usize>());
        for (id, e) in &pool.entries {
            assert_eq!(e.tx.id, *id);
            assert_eq!(pool.by_sender[&e.tx.sender][&e.tx.nonce], *id);
            assert!(pool
                .by_rate
                .contains(&(FeeRate::new(e.tx.fee, e.tx.len), *id)));
            assert!(pool.by_expiry.contains(&(e.tx.expires_at, *id)));
        }
        let c = &pool.config;
        assert!(n <= c.max_txs && pool.bytes() <= c.max_bytes);
        assert!(pool
            .by_sender
            .values()
            .all(|txs| txs.len() <= c.max_per_account));
    }

    /// No count or byte limit for `select`.
    const ANY: (usize, usize) = (usize::MAX, usize::MAX);

    /// name, pool contents, account nonces, height, (max_count, max_bytes),
    /// expected ids in selection order.
    type SelectCase<'a> = (
        &'a str,
        &'a [Tx],
        &'a [(u8, u64)],
        u64,
        (usize, usize),
        &'a [u32],
    );

    /// Selects from a pool of each case's txs and compares the ids, in order.
    fn check_select(cases: &[SelectCase<'_>]) {
        for (name, setup, account, height, (max_count, max_bytes), want) in cases {
            let pool = pool(name, &MempoolConfig::default(), setup);
            let got = pool.select(*max_count, *max_bytes, *height, nonces(account));
            assert_eq!(ids(&got), *want, "{name}");
        }
    }

    type Want = Result<(), MempoolError>;

    /// name, config, pool contents, new tx, its account nonce, height,
    /// expected result, expected ids left in the pool.
    type InsertCase<'a> = (
        &'a str,
        &'a MempoolConfig,
        &'a [Tx],
        Tx,
        u64,
        u64,
        Want,
        &'a [u32],
    );

    /// Inserts each case's new tx into a pool of its txs, then compares the
    /// result and the ids left in the pool.
    fn check_insert(cases: &[InsertCase<'_>]) {
        for (name, config, setup, new, account_nonce, height, want, want_ids) in cases {
            let mut pool = pool(name, config, setup);
            let got = pool.insert(new.clone(), *account_nonce, *height);
            assert_eq!(got, *want, "{name}");
            assert_eq!(ids(pool.iter()), *want_ids, "{name}");
            assert_invariants(&pool);
        }
    }

    #[test]
    fn default_config() {
        let c = MempoolConfig::default();
        assert_eq!(
            (c.max_txs, c.max_bytes, c.max_tx_bytes, c.max_per_account),
            (50_000, 64 << 20, 64 << 10, 256)
        );
        assert_eq!(
            (c.max_nonce_gap, c.min_fee_per_byte, c.replace_bump_percent),
            (256, 1, 10)
        );
    }

    #[test]
    fn select_orders_by_fee_per_byte_across_senders() {
        #[rustfmt::skip]
        check_select(&[
            ("highest rate first", &[tx(1, A, 0, 100, 10), tx(2, B, 0, 300, 20), tx(3, C, 0, 50, 10)], &[], 0, ANY, &[2, 1, 3]),
            ("10/3 < 7/2 by cross-multiplication", &[tx(1, A, 0, 10, 3), tx(2, B, 0, 7, 2)], &[], 0, ANY, &[2, 1]),
            ("higher total fee but lower rate", &[tx(1, A, 0, 1000, 1000), tx(2, B, 0, 20, 10)], &[], 0, ANY, &[2, 1]),
            ("equal rate: lower id first", &[tx(5, A, 0, 20, 10), tx(3, B, 0, 40, 20)], &[], 0, ANY, &[3, 5]),
        ]);
    }

    #[test]
    fn select_keeps_nonce_order_within_sender() {
        #[rustfmt::skip]
        check_select(&[
            ("later nonce pays more", &[r(1, A, 0, 1), r(2, A, 1, 100), r(3, B, 0, 5)], &[], 0, ANY, &[3, 1, 2]),
            ("inserted out of order", &[r(1, A, 2, 9), r(2, A, 0, 1), r(3, A, 1, 5)], &[], 0, ANY, &[2, 3, 1]),
            ("senders interleave by their next tx", &[r(1, A, 0, 10), r(2, A, 1, 2), r(3, B, 0, 5), r(4, B, 1, 4)], &[], 0, ANY, &[1, 3, 4, 2]),
            ("starts at the account nonce", &[r(1, A, 0, 1), r(2, A, 1, 1), r(3, A, 2, 1)], &[(A, 1)], 0, ANY, &[2, 3]),
        ]);
    }

    #[test]
    fn select_stops_at_nonce_gap() {
        #[rustfmt::skip]
        check_select(&[
            ("gap stops only that sender", &[r(1, A, 0, 2), r(2, A, 2, 9), r(3, B, 0, 1)], &[], 0, ANY, &[1, 3]),
            ("first nonce missing", &[r(1, A, 1, 5), r(2, A, 2, 5)], &[], 0, ANY, &[]),
            ("account nonce past the pool", &[r(1, A, 0, 5), r(2, A, 1, 5)], &[(A, 2)], 0, ANY, &[]),
        ]);
    }

    #[test]
    fn select_respects_count_and_byte_limits() {
        let three = [r(1, A, 0, 3), r(2, B, 0, 2), r(3, C, 0, 1)];
        let big_first = [
            tx(1, A, 0, 500, 50),
            tx(2, B, 0, 50, 10),
            tx(3, C, 0, 10, 10),
        ];
        let big_second = [
            tx(1, A, 0, 100, 10),
            tx(2, A, 1, 500, 50),
            tx(3, A, 2, 50, 5),
            tx(4, B, 0, 10, 10),
        ];
        #[rustfmt::skip]
        check_select(&[
            ("max_count", &three, &[], 0, (2, usize::MAX), &[1, 2]),
            ("max_count zero", &three, &[], 0, (0, usize::MAX), &[]),
            ("max_bytes exact", &three, &[], 0, (usize::MAX, 30), &[1, 2, 3]),
            ("max_bytes zero", &three, &[], 0, (usize::MAX, 0), &[]),
            ("big tx skipped, smaller ones still fit", &big_first, &[], 0, (usize::MAX, 30), &[2, 3]),
            ("sender stops after a tx that does not fit", &big_second, &[], 0, (usize::MAX, 30), &[1, 4]),
        ]);
    }

    #[test]
    fn select_skips_expired() {
        let one_expiring = [r(1, A, 0, 9).exp(5), r(2, B, 0, 1)];
        #[rustfmt::skip]
        check_select(&[
            ("included at its last height", &one_expiring, &[], 5, ANY, &[1, 2]),
            ("skipped after it", &one_expiring, &[], 6, ANY, &[2]),
            ("expired tx blocks later nonces", &[r(1, A, 0, 1), r(2, A, 1, 1).exp(5), r(3, A, 2, 1)], &[], 6, ANY, &[1]),
        ]);
    }

    #[test]
    fn replacement_requires_fee_bump() {
        let old = [tx(1, A, 0, 100, 10)];
        let two = [tx(1, A, 0, 100, 10), tx(3, A, 1, 100, 10)];
        let dflt = MempoolConfig::default();
        let no_bump = cfg(|c| c.replace_bump_percent = 0);
        let under = Err(MempoolError::ReplacementUnderpriced);
        #[rustfmt::skip]
        check_insert(&[
            ("9% more", &dflt, &old, tx(2, A, 0, 109, 10), 0, 0, under.clone(), &[1]),
            ("exactly 10% more", &dflt, &old, tx(2, A, 0, 110, 10), 0, 0, Ok(()), &[2]),
            ("cheaper", &dflt, &old, tx(2, A, 0, 50, 10), 0, 0, under.clone(), &[1]),
            ("more total fee, same rate", &dflt, &old, tx(2, A, 0, 200, 20), 0, 0, under.clone(), &[1]),
            ("bigger tx at the bump", &dflt, &old, tx(2, A, 0, 220, 20), 0, 0, Ok(()), &[2]),
            ("0% bump: equal rate", &no_bump, &old, tx(2, A, 0, 100, 10), 0, 0, Ok(()), &[2]),
            ("0% bump: lower rate", &no_bump, &old, tx(2, A, 0, 99, 10), 0, 0, under, &[1]),
            ("later nonces stay", &dflt, &two, tx(2, A, 0, 200, 10), 0, 0, Ok(()), &[2, 3]),
        ]);
    }

    #[test]
    fn eviction_when_full() {
        let three = cfg(|c| c.max_txs = 3);
        let bytes = cfg(|c| c.max_bytes = 100);
        let full = Err(MempoolError::PoolFull);
        let abc = [r(1, A, 0, 2), r(2, B, 0, 5), r(3, C, 0, 3)];
        #[rustfmt::skip]
        check_insert(&[
            ("evicts the cheapest", &three, &abc, r(4, D, 0, 3), 0, 0, Ok(()), &[2, 3, 4]),
            ("equal rate is not enough", &three, &abc, r(4, D, 0, 2), 0, 0, full.clone(), &[1, 2, 3]),
            ("replacement needs no room", &three, &abc, r(4, A, 0, 3), 0, 0, Ok(()), &[2, 3, 4]),
            ("victim's later nonces go too", &three, &[r(1, A, 0, 2), r(2, A, 1, 9), r(3, B, 0, 5)], r(4, C, 0, 3), 0, 0, Ok(()), &[3, 4]),
            ("victim's earlier nonces stay", &three, &[r(1, A, 0, 9), r(2, A, 1, 2), r(3, B, 0, 5)], r(4, C, 0, 3), 0, 0, Ok(()), &[1, 3, 4]),
            ("own earlier nonce is cheapest", &three, &[r(1, A, 0, 2), r(2, B, 0, 5), r(3, C, 0, 6)], r(4, A, 1, 9), 0, 0, full.clone(), &[1, 2, 3]),
            ("own later nonce is evicted", &three, &[r(1, A, 0, 9), r(2, A, 2, 2), r(3, B, 0, 5)], r(4, A, 1, 4), 0, 0, Ok(()), &[1, 3, 4]),
            ("bytes: one victim frees enough", &bytes, &[tx(1, A, 0, 120, 60), tx(2, B, 0, 200, 40)], tx(3, C, 0, 150, 50), 0, 0, Ok(()), &[2, 3]),
            ("bytes: two victims", &bytes, &[tx(1, A, 0, 120, 60), tx(2, B, 0, 200, 40)], tx(3, C, 0, 900, 100), 0, 0, Ok(()), &[3]),
            ("bytes: second victim pays more", &bytes, &[tx(1, A, 0, 120, 60), tx(2, B, 0, 200, 40)], tx(3, C, 0, 300, 100), 0, 0, full.clone(), &[1, 2]),
            ("bytes: larger than the pool", &bytes, &[], tx(1, A, 0, 1010, 101), 0, 0, full, &[]),
            ("bytes: planned tail not counted twice", &bytes, &[tx(1, A, 0, 20, 10), tx(2, A, 1, 120, 40), tx(3, B, 0, 200, 50)], tx(4, C, 0, 300, 60), 0, 0, Ok(()), &[4]),
            ("bytes: replaced tx is the cheapest", &bytes, &[tx(1, A, 0, 100, 50), tx(2, B, 0, 250, 50)], tx(3, A, 0, 360, 60), 0, 0, Ok(()), &[3]),
            ("bytes: growing replacement evicts", &bytes, &[tx(1, A, 0, 250, 50), tx(2, B, 0, 100, 50)], tx(3, A, 0, 360, 60), 0, 0, Ok(()), &[3]),
        ]);
    }

    #[test]
    fn per_account_cap() {
        let two = cfg(|c| c.max_per_account = 2);
        let a01 = [r(1, A, 0, 1), r(2, A, 1, 1)];
        #[rustfmt::skip]
        check_insert(&[
            ("third tx of the sender", &two, &a01, r(3, A, 2, 1), 0, 0, Err(MempoolError::AccountFull { max: 2 }), &[1, 2]),
            ("other sender unaffected", &two, &a01, r(3, B, 0, 1), 0, 0, Ok(()), &[1, 2, 3]),
            ("replacement does not count", &two, &a01, r(3, A, 1, 2), 0, 0, Ok(()), &[1, 3]),
            ("committed nonce frees a slot", &two, &a01, r(3, A, 2, 1), 1, 0, Ok(()), &[2, 3]),
        ]);
    }

    #[test]
    fn insert_errors() {
        use MempoolError::*;
        let c = cfg(|c| {
            c.max_tx_bytes = 64;
            c.max_nonce_gap = 2;
            c.min_fee_per_byte = 2;
        });
        let one_per_account = cfg(|c| c.max_per_account = 1);
        let one = cfg(|c| c.max_txs = 1);
        let t = [tx(1, A, 0, 100, 10)];
        #[rustfmt::skip]
        check_insert(&[
            ("already known", &c, &t, t[0].clone(), 0, 0, Err(AlreadyKnown), &[1]),
            ("nonce below account", &c, &[], tx(2, A, 3, 100, 10), 5, 0, Err(NonceTooLow { nonce: 3, expected: 5 }), &[]),
            ("nonce at account", &c, &[], tx(2, A, 5, 100, 10), 5, 0, Ok(()), &[2]),
            ("nonce past the gap", &c, &[], tx(2, A, 8, 100, 10), 5, 0, Err(NonceTooFar { nonce: 8, expected: 5 }), &[]),
            ("nonce at the gap", &c, &[], tx(2, A, 7, 100, 10), 5, 0, Ok(()), &[2]),
            ("expired", &c, &[], tx(2, A, 0, 100, 10).exp(9), 0, 10, Err(Expired { expires_at: 9, height: 10 }), &[]),
            ("expires at this height", &c, &[], tx(2, A, 0, 100, 10).exp(10), 0, 10, Ok(()), &[2]),
            ("too large", &c, &[], tx(2, A, 0, 1000, 65), 0, 0, Err(TooLarge { len: 65, max: 64 }), &[]),
            ("largest allowed", &c, &[], tx(2, A, 0, 1000, 64), 0, 0, Ok(()), &[2]),
            ("fee below minimum", &c, &[], tx(2, A, 0, 19, 10), 0, 0, Err(FeeTooLow { fee: 19, min: 20 }), &[]),
            ("fee at minimum", &c, &[], tx(2, A, 0, 20, 10), 0, 0, Ok(()), &[2]),
            ("account full", &one_per_account, &t, tx(2, A, 1, 100, 10), 0, 0, Err(AccountFull { max: 1 }), &[1]),
            ("pool full", &one, &t, tx(2, B, 0, 100, 10), 0, 0, Err(PoolFull), &[1]),
            ("replacement underpriced", &c, &t, tx(2, A, 0, 100, 10), 0, 0, Err(ReplacementUnderpriced), &[1]),
        ]);
    }

    #[test]
    fn error_messages_carry_values() {
        let cases = [
            (
                MempoolError::NonceTooLow {
                    nonce: 3,
                    expected: 5,
                },
                ["3", "5"],
            ),
            (
                MempoolError::NonceTooFar {
                    nonce: 9,
                    expected: 4,
                },
                ["9", "4"],
            ),
            (
                MempoolError::Expired {
                    expires_at: 7,
                    height: 8,
                },
                ["7", "8"],
            ),
            (MempoolError::TooLarge { len: 65, max: 64 }, ["65", "64"]),
            (MempoolError::FeeTooLow { fee: 19, min: 20 }, ["19", "20"]),
        ];
        for (err, parts) in cases {
            let msg = err.to_string();
            assert!(parts.iter().all(|p| msg.contains(p)), "{msg}");
        }
    }

    #[test]
    fn on_committed_removes_included_and_expired() {
        let setup = [
            r(1, A, 0, 1),
            r(2, A, 1, 1),
            r(3, A, 2, 1),
            r(4, B, 0, 1).exp(5),
            r(5, C, 0, 1).exp(6),
            r(6, D, 0, 1),
        ];
        /// name, touched senders, next height, account nonces, ids left.
        type CommitCase<'a> = (&'a str, &'a [u8], u64, &'a [(u8, u64)], &'a [u32]);
        #[rustfmt::skip]
        let cases: &[CommitCase<'_>] = &[
            ("nothing changed", &[], 0, &[], &[1, 2, 3, 4, 5, 6]),
            ("included txs", &[A], 0, &[(A, 2)], &[3, 4, 5, 6]),
            ("expired txs", &[], 6, &[], &[1, 2, 3, 5, 6]),
            ("both", &[A, B], 6, &[(A, 2), (B, 0)], &[3, 5, 6]),
            ("untouched sender keeps stale tx", &[A], 0, &[(A, 1), (D, 1)], &[2, 3, 4, 5, 6]),
            ("everything", &[A, B, C, D], 0, &[(A, 3), (B, 1), (C, 1), (D, 1)], &[]),
        ];
        for (name, touched, next_height, account, want) in cases {
            let mut pool = pool(name, &MempoolConfig::default(), &setup);
            pool.on_committed(touched, *next_height, nonces(account));
            assert_eq!(ids(pool.iter()), *want, "{name}");
            assert_invariants(&pool);
        }
    }

    #[test]
    fn on_committed_reads_only_touched_senders() {
        let mut pool = pool(
            "reads",
            &MempoolConfig::default(),
            &[r(1, A, 0, 1), r(2, B, 0, 1)],
        );
        let read = RefCell::new(Vec::new());
        pool.on_committed(&[B, C], 0, |s| {
            read.borrow_mut().push(*s);
            1
        });
        // C has nothing pending, so its nonce is not worth a state read.
        assert_eq!(read.into_inner(), vec![B]);
        assert_eq!(ids(pool.iter()), vec![1]);
    }

    #[test]
    fn remove_and_accessors() {
        let mut pool = pool(
            "remove",
            &MempoolConfig::default(),
            &[r(1, A, 0, 1), tx(2, A, 1, 70, 7)],
        );
        assert_eq!((pool.len(), pool.bytes(), pool.sender_len(&A)), (2, 17, 2));
        assert!(pool.contains(&2));
        assert_eq!(pool.get(&2), Some(&tx(2, A, 1, 70, 7)));
        assert_eq!(pool.remove(&2), Some(tx(2, A, 1, 70, 7)));
        assert_eq!(pool.remove(&2), None);
        assert!(!pool.contains(&2) && pool.get(&2).is_none());
        assert_eq!((pool.len(), pool.bytes(), pool.sender_len(&A)), (1, 10, 1));
        assert_invariants(&pool);
    }

    #[test]
    fn next_nonce_fills_the_first_gap() {
        // A has nonces 0, 1 and 3 pooled (2 was lost in transit); B nothing.
        let pool = pool(
            "gap",
            &MempoolConfig::default(),
            &[r(1, A, 0, 1), r(2, A, 1, 1), r(3, A, 3, 1)],
        );
        for (sender, account_nonce, want) in [(A, 0, 2), (A, 2, 2), (A, 3, 4), (A, 7, 7), (B, 5, 5)]
        {
            assert_eq!(
                pool.next_nonce(&sender, account_nonce),
                want,
                "{sender:?} from {account_nonce}"
            );
        }
    }

    #[test]
    fn wide_rate_arithmetic_does_not_overflow() {
        let max = FeeRate::new(u64::MAX, 1);
        let min = FeeRate::new(1, usize::MAX);
        assert!(max > min);
        assert_eq!(min.cmp(&max), Ordering::Less);
        assert!(max.at_least_bumped(max, 0));
        assert!(!max.at_least_bumped(max, 1));
        assert!(max.at_least_bumped(min, u64::MAX));
        assert!(!min.at_least_bumped(max, 0));
        assert_eq!(FeeRate::new(5, 0), FeeRate::new(5, 1));
        assert_eq!(
            mul_wide(u128::MAX, u64::MAX),
            (
                u128::from(u64::MAX) - 1,
                u128::MAX - u128::from(u64::MAX) + 1
            )
        );
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// A new tx; `nonce_offset` 0 is one below the account nonce.
        Insert {
            sender: u8,
            nonce_offset: u64,
            fee: u64,
            len: usize,
            ttl: u64,
        },
        /// Insert an earlier tx again.
        Reinsert(usize),
        /// Build and commit a block `skip` heights later (as if `on_committed`
        /// had been missed for empty blocks); `external` bumps one more
        /// sender's nonce as if a tx from elsewhere was included.
        Commit {
            skip: u64,
            max_count: usize,
            max_bytes: usize,
            external: Option<u8>,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u8..4, 0u64..6, 0u64..400, 0usize..40, 0u64..8).prop_map(
                |(sender, nonce_offset, fee, len, ttl)| Op::Insert { sender, nonce_offset, fee, len, ttl }
            ),
            1 => any::<usize>().prop_map(Op::Reinsert),
            2 => (0u64..3, 0usize..6, 0usize..120, proptest::option::of(0u8..4)).prop_map(
                |(skip, max_count, max_bytes, external)| Op::Commit { skip, max_count, max_bytes, external }
            ),
        ]
    }

    fn rate(t: &Tx) -> FeeRate {
        FeeRate::new(t.fee, t.len)
    }

    /// Checks that `sel` is a valid block from `pool` at `height`, and that it
    /// starts with the best transaction that fits.
    fn assert_executable(
        pool: &Mempool<Tx>,
        sel: &[Tx],
        account: &BTreeMap<u8, u64>,
        height: u64,
        max_count: usize,
        max_bytes: usize,
    ) {
        assert!(sel.len() <= max_count);
        assert!(sel.iter().map(|t| t.len).sum::<usize>() <= max_bytes);
        let mut next = account.clone();
        for t in sel {
            assert_eq!(pool.get(&t.id), Some(t));
            assert!(t.expires_at >= height, "selected an expired tx");
            let n = next.entry(t.sender).or_insert(0);
            assert_eq!(t.nonce, *n, "nonces contiguous from the account nonce");
            *n += 1;
        }
        let heads: Vec<&Tx> = pool
            .iter()
            .filter(|t| t.nonce == account.get(&t.sender).copied().unwrap_or(0))
            .filter(|t| t.expires_at >= height && t.len <= max_bytes)
            .collect();
        match sel.first() {
            None => assert!(
                max_count == 0 || heads.is_empty(),
                "nothing selected from {heads:?}"
            ),
            Some(first) => assert!(heads.iter().all(|h| rate(h) <= rate(first))),
        }
    }

    /// Checks an insert of `t` into a pool that held `before`: a rejection
    /// changes nothing; an admission evicts, per sender, a suffix of nonces
    /// whose lowest pays strictly less per byte than `t` and is above `t`'s
    /// own nonce if it is `t`'s sender.
    fn assert_admission(
        config: &MempoolConfig,
        before: &[Tx],
        pool: &Mempool<Tx>,
        t: &Tx,
        result: Result<(), MempoolError>,
    ) {
        let after: Vec<Tx> = pool.iter().cloned().collect();
        let replaced = before
            .iter()
            .find(|b| b.sender == t.sender && b.nonce == t.nonce);
        match result {
            Err(e) => {
                assert_eq!(
                    e == MempoolError::AlreadyKnown,
                    before.iter().any(|b| b.id == t.id)
                );
                assert_eq!(after, before, "rejection changed the pool");
                if e == MempoolError::PoolFull {
                    let (count, bytes) = (before.len() + 1, pool.bytes() + t.len);
                    let freed = replaced.map_or((0, 0), |r| (1, r.len));
                    assert!(count - freed.0 > config.max_txs || bytes - freed.1 > config.max_bytes);
                }
            }
            Ok(()) => {
                assert_eq!(pool.get(&t.id), Some(t));
                if let Some(r) = replaced {
                    assert!(!pool.contains(&r.id));
                }
                let gone: Vec<&Tx> = before
                    .iter()
                    .filter(|b| !pool.contains(&b.id) && Some(*b) != replaced)
                    .collect();
                for victim in &gone {
                    let lowest = gone
                        .iter()
                        .filter(|g| g.sender == victim.sender)
                        .min_by_key(|g| g.nonce)
                        .unwrap();
                    assert!(rate(lowest) < rate(t), "evicted {lowest:?} for {t:?}");
                    assert!(lowest.sender != t.sender || lowest.nonce > t.nonce);
                    assert!(after.iter().all(|a| a.sender != victim.sender
                        || a.nonce < lowest.nonce
                        || a.id == t.id));
                }
            }
        }
    }

    proptest! {
        #[test]
        fn random_ops_keep_invariants(ops in proptest::collection::vec(op(), 1..80)) {
            let config = MempoolConfig {
                max_txs: 8,
                max_bytes: 150,
                max_tx_bytes: 35,
                max_per_account: 3,
                max_nonce_gap: 3,
                min_fee_per_byte: 1,
                replace_bump_percent: 10,
            };
            let mut pool = Mempool::<Tx>::new(config.clone());
            let mut account: BTreeMap<u8, u64> = BTreeMap::new();
            let mut history: Vec<Tx> = Vec::new();
            let mut height = 1u64;
            for op in ops {
                let new = match op {
                    Op::Insert { sender, nonce_offset, fee, len, ttl } => {
                        let an = account.get(&sender).copied().unwrap_or(0);
                        let id = u32::try_from(history.len()).unwrap();
                        let nonce = (an + nonce_offset).saturating_sub(1);
                        let t = Tx { id, sender, nonce, fee, len, expires_at: height + ttl - 1 };
                        history.push(t.clone());
                        Some(t)
                    }
                    Op::Reinsert(i) if !history.is_empty() => Some(history[i % history.len()].clone()),
                    Op::Reinsert(_) => None,
                    Op::Commit { skip, max_count, max_bytes, external } => {
                        height += skip;
                        let sel = pool.select(max_count, max_bytes, height, |s| account.get(s).copied().unwrap_or(0));
                        assert_executable(&pool, &sel, &account, height, max_count, max_bytes);
                        let mut touched: Vec<u8> = sel.iter().map(|t| t.sender).collect();
                        for t in &sel {
                            account.insert(t.sender, t.nonce + 1);
                        }
                        if let Some(s) = external {
                            *account.entry(s).or_insert(0) += 1;
                            touched.push(s);
                        }
                        height += 1;
                        let before: Vec<Tx> = pool.iter().cloned().collect();
                        pool.on_committed(&touched, height, |s| account.get(s).copied().unwrap_or(0));
                        let kept: Vec<Tx> = before
                            .into_iter()
                            .filter(|t| t.nonce >= account.get(&t.sender).copied().unwrap_or(0) && t.expires_at >= height)
                            .collect();
                        assert_eq!(pool.iter().cloned().collect::<Vec<_>>(), kept, "on_committed kept the wrong txs");
                        None
                    }
                };
                if let Some(t) = new {
                    let before: Vec<Tx> = pool.iter().cloned().collect();
                    let an = account.get(&t.sender).copied().unwrap_or(0);
                    let result = pool.insert(t.clone(), an, height);
                    assert_admission(&config, &before, &pool, &t, result);
                }
                assert!(pool.iter().all(|t| t.nonce >= account.get(&t.sender).copied().unwrap_or(0)));
                assert_invariants(&pool);
            }
        }
    }
}
