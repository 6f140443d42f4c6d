//! The storage module on a real one-validator chain (a replica proposing
//! and committing its own blocks, the PVSS beacon moving epochs): providers
//! register, a deal is placed and escrowed, receipts come in, audits pay
//! honest providers and strike the rest, lost fragments are declared, and
//! IOST is conserved throughout.

mod module;
