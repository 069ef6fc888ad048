//! Tests that run on both back ends: `on_both!(test_fn, …)` makes an `embedded` and a `nats`
//! test of each `async fn test_fn(backend: Backend)` in the including file.
#![allow(dead_code)]

/// Which log a test runs on.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Embedded,
    Nats,
}

/// A log of either kind in a temp folder (and a nats-server of its own for NATS).
pub async fn open_log(
    backend: Backend,
    dir: &std::path::Path,
) -> (std::sync::Arc<dyn whistle::log::EventLog>, Option<crate::nats_server::NatsServer>) {
    use whistle::service::LogHandle;
    match backend {
        Backend::Embedded => (LogHandle::open(dir, None).await.unwrap().log(), None),
        Backend::Nats => {
            let server = crate::nats_server::NatsServer::start();
            let options = whistle::log::nats::NatsOptions::new(server.url());
            let log = LogHandle::open(dir, Some(&options)).await.unwrap().log();
            (log, Some(server))
        }
    }
}

#[macro_export]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::Backend::Embedded).await
            })*
        }
        mod nats {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::Backend::Nats).await
            })*
        }
    };
}
