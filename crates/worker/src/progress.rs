//! Progress reports from running jobs: a job calls [`report`] from its work (an I/O task or a
//! CPU closure) and the report travels to the gateway on the job's dispatch stream, then to
//! `GET /api/jobs/{id}` and the job's event stream. Outside a job, or for a job run by a caller
//! that does not follow progress (`Execute`), a report goes nowhere and costs next to nothing.

use crate::Work;
use std::{cell::RefCell, sync::Arc};

/// One progress report.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// From 0 (nothing done) to 1 (all done).
    pub fraction: f64,
    /// What the job is doing, in a few words.
    pub message: String,
}

/// The most bytes of a message kept: a report is a status line, not a log.
pub const MAX_MESSAGE_BYTES: usize = 256;

/// Where a job's reports go.
#[derive(Clone)]
pub struct ProgressSink(Arc<dyn Fn(Progress) + Send + Sync>);

impl ProgressSink {
    /// A sink calling `send` with each report.
    pub fn new(send: impl Fn(Progress) + Send + Sync + 'static) -> Self {
        Self(Arc::new(send))
    }
}

impl std::fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressSink")
    }
}

tokio::task_local! {
    static TASK_SINK: ProgressSink;
}

thread_local! {
    static THREAD_SINK: RefCell<Option<ProgressSink>> = const { RefCell::new(None) };
}

/// Reports the running job's progress: `fraction` from 0 to 1 (clamped; not a number reads as
/// 0) and a short message (cut at [`MAX_MESSAGE_BYTES`]). Call it from a job's work as often as
/// is useful: a stream sends each job's latest report only.
pub fn report(fraction: f64, message: impl Into<String>) {
    let fraction = if fraction.is_nan() { 0.0 } else { fraction.clamp(0.0, 1.0) };
    let mut message = message.into();
    if message.len() > MAX_MESSAGE_BYTES {
        let mut end = MAX_MESSAGE_BYTES;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    let progress = Progress { fraction, message };
    let sent = TASK_SINK.try_with(|sink| (sink.0)(progress.clone())).is_ok();
    if !sent {
        THREAD_SINK.with(|sink| {
            if let Some(sink) = &*sink.borrow() {
                (sink.0)(progress);
            }
        });
    }
}

/// `work` with its reports sent to `sink`.
pub(crate) fn follow(work: Work, sink: ProgressSink) -> Work {
    match work {
        Work::Io(future) => Work::io(TASK_SINK.scope(sink, future)),
        Work::Cpu(run) => Work::cpu(move |cancel| {
            THREAD_SINK.with(|slot| *slot.borrow_mut() = Some(sink));
            // Cleared even if the job panics, so the thread's next job reports nowhere else.
            let _clear = ClearOnDrop;
            run(cancel)
        }),
    }
}

struct ClearOnDrop;

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        THREAD_SINK.with(|slot| slot.borrow_mut().take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn collecting() -> (ProgressSink, Arc<Mutex<Vec<Progress>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = Arc::clone(&seen);
        (ProgressSink::new(move |progress| into.lock().unwrap().push(progress)), seen)
    }

    #[tokio::test]
    async fn reports_reach_the_sink_of_their_own_job_only() {
        let (sink, seen) = collecting();
        report(0.1, "before any job: nowhere");
        let Work::Io(work) = follow(
            Work::io(async {
                report(0.5, "half");
                report(7.0, "x".repeat(300));
                report(f64::NAN, "nan");
                Ok(bytes::Bytes::new())
            }),
            sink,
        ) else {
            unreachable!()
        };
        work.await.unwrap();
        let seen = seen.lock().unwrap();
        let fractions: Vec<f64> = seen.iter().map(|progress| progress.fraction).collect();
        assert_eq!(fractions, [0.5, 1.0, 0.0]);
        assert_eq!(seen[1].message.len(), MAX_MESSAGE_BYTES);
    }

    #[test]
    fn a_cpu_job_reports_from_its_thread_and_leaves_it_clean() {
        let (sink, seen) = collecting();
        let Work::Cpu(run) = follow(
            Work::cpu(|_| {
                report(0.25, "a quarter");
                Ok(bytes::Bytes::new())
            }),
            sink,
        ) else {
            unreachable!()
        };
        run(&tokio_util::sync::CancellationToken::new()).unwrap();
        report(0.9, "after the job: nowhere");
        assert_eq!(*seen.lock().unwrap(), [Progress { fraction: 0.25, message: "a quarter".into() }]);
    }
}
