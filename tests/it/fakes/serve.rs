//! Runs a test fake's axum app on its own thread and runtime (tests are synchronous) and stops
//! it when dropped. Shared by every fake server.

/// A fake's state, locked; a lock poisoned by a panicking handler is taken anyway (the test that
/// panicked reports itself; the fake keeps answering the others).
pub fn lock<T>(state: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// A fake being served; dropping it shuts the server down.
pub struct Served {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    join_on_drop: bool,
}

/// A non-blocking listener on a free loopback port, and its address.
pub fn bind() -> (std::net::TcpListener, std::net::SocketAddr) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    (listener, addr)
}

/// Serves `app()` on `listener` (already bound, non-blocking) with `worker_threads` workers.
/// `join_on_drop: false` for fakes that may be sleeping on a delayed answer to a client that is
/// gone: their thread then ends with the test process instead of holding the test up.
pub fn spawn(
    listener: std::net::TcpListener,
    worker_threads: usize,
    join_on_drop: bool,
    app: impl FnOnce() -> axum::Router + Send + 'static,
) -> Served {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads.max(1))
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let _ = axum::serve(listener, app())
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
    });
    Served {
        shutdown: Some(tx),
        thread: Some(thread),
        join_on_drop,
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.thread.take() {
            Some(t) if self.join_on_drop => {
                let _ = t.join();
            }
            _ => {}
        }
    }
}
