//! warden's integration tests: one binary, a module per area (see ripgrep's tests/tests.rs).
//! Tests run the real `warden` binary on loopback and, for LDAP, a real Samba AD DC.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod accounts;
mod actions;
mod ad;
mod cli;
mod clock;
mod cold_start;
mod commit;
mod config_files;
mod console;
mod contain;
mod databases;
mod dc;
mod dc_faults;
mod dirsync;
mod domains;
mod fake_mx;
mod faults;
mod files;
mod gate;
mod gateway;
mod imperva;
mod layers;
mod limits;
mod metrics;
mod mysql;
mod nested;
mod nginx;
mod patterns;
mod proxy;
mod reload;
mod replicas;
mod respond;
mod security;
mod seed;
mod siem;
mod sso;
