//! Background services: the loops that keep warden converged while it serves — push and pull
//! with their watches ([`sync`]), followed actions ([`followed_actions`]).

pub mod followed_actions;
pub mod sync;
