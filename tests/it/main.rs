//! The integration tests, as one test binary (`cargo test --test it`): the CLI run as a
//! subprocess against loopback fakes of GitHub, OpenAI and Anthropic. One binary means the fakes
//! compile and link once, and every test shares one pool of test threads.
//!
//! * A private data dir per test and helpers to run the binary in it: [`support`].
//! * The fake services, one module per provider API: [`fakes`].
//! * One module per command family: [`foundation`] (import, sync, query, status), [`collect`],
//!   [`process`] (real time), [`process_query`] (SQL-selected pipelines) and [`batch`].
//! * [`layers`]: the import graph of `src/` points one way.

mod fakes;
mod support;

mod batch;
mod batch_io;
mod collect;
mod collect_faults;
mod collect_strict;
mod concurrency;
mod demo;
mod faults_batch;
mod faults_realtime;
mod foundation;
mod hostile_input;
mod layers;
mod process;
mod process_failures;
mod process_models;
mod process_provider;
mod process_query;
mod quality;
mod recommendations;
mod store_import;
mod store_schema;
mod update_labels;
