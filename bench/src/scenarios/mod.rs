//! One module per scenario: each sets up what it races for, drives the load and checks the
//! outcome.

pub(crate) mod coupon_race;
pub(crate) mod flash_sale;
pub(crate) mod holds;
pub(crate) mod mixed;
pub(crate) mod points;
pub(crate) mod reads;
pub(crate) mod user_reads;
