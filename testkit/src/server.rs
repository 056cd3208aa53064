//! A test server on a thread of its own: a single-threaded tokio runtime serving one listener
//! until the handle is dropped (which stops it and joins the thread, so no test leaves one behind).

use std::future::Future;
use std::net::SocketAddr;

pub struct Background {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    /// Binds with `bind` on the new thread (so a network namespace entered there holds the
    /// socket), then runs `serve` on the listener until dropped. Returns the bound address, or
    /// `bind`'s error.
    pub fn spawn<B, F, Fut>(name: &str, bind: B, serve: F) -> std::io::Result<(Background, SocketAddr)>
    where
        B: FnOnce() -> std::io::Result<std::net::TcpListener> + Send + 'static,
        F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new().name(name.into()).spawn(move || {
            let listener = match bind().and_then(|l| l.set_nonblocking(true).map(|_| l)) {
                Ok(listener) => listener,
                Err(e) => {
                    let _ = bound_tx.send(Err(e));
                    return;
                }
            };
            let _ = bound_tx.send(listener.local_addr());
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                tokio::select! {
                    _ = serve(listener) => {}
                    _ = stopped => {}
                }
            });
        })?;
        let addr = match bound_rx.recv() {
            Ok(Ok(addr)) => addr,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(std::io::Error::other(format!(
                    "{name}: the thread ended before binding"
                )));
            }
        };
        Ok((
            Background {
                stop: Some(stop),
                thread: Some(thread),
            },
            addr,
        ))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
