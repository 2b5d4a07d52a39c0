//! The attempts of one call after its first: wait, send again, until one commits or the
//! retry window closes.

use std::sync::Arc;
use std::time::Instant;

use tonic::body::Body;
use tower::{Service, ServiceExt};

use super::classify::{Retry, copy_head, failure_status, is_unavailable, refuses_retry};
use super::payload::Payload;
use super::reply::reply;
use super::{BoxError, CallResult, Meter, NOTICE_EVERY, Shared, end_meter};
use crate::wire::{self, GRPC_TIMEOUT};

/// One call's attempts after the first, until one commits or the retry window closes.
pub(super) struct Attempts {
    /// The request head, for the next attempts.
    pub(super) head: http::request::Parts,
    pub(super) payload: Payload,
    pub(super) start: Instant,
    /// The call's own deadline, if any.
    pub(super) deadline: Option<Instant>,
    /// The deadline or the end of the retry window, whichever comes first.
    pub(super) limit: Instant,
    pub(super) shared: Arc<Shared>,
    pub(super) meter: Meter,
}

pub(super) type Attempt = Result<http::Response<Body>, tonic::transport::Error>;

impl Attempts {
    /// The call's answer, or this failure to retry (with the attempts, for the retry; boxed:
    /// the rare path).
    pub(super) fn outcome(mut self, result: Attempt) -> Result<CallResult, Box<(Self, Retry)>> {
        match result {
            Ok(response) if !is_unavailable(response.headers()) || refuses_retry(response.headers()) => {
                // Committed: stop recording, free what was kept for replays.
                if let Payload::Streaming(replay) = &self.payload {
                    replay.lock().stop_recording();
                }
                Ok(Ok(reply(response, self.shared, self.meter)))
            }
            Ok(response) => Err(Box::new((self, Retry::Response(response)))),
            // The request body's own error, rather than the stream reset it caused.
            Err(_) if let Some(status) = self.payload.failure() => {
                end_meter(&mut self.meter, status.code());
                Ok(Err(Box::new(status) as BoxError))
            }
            Err(e) => match failure_status(e) {
                status if status.code() == tonic::Code::Unavailable => Err(Box::new((self, Retry::Status(status)))),
                status => {
                    end_meter(&mut self.meter, status.code());
                    Ok(Err(Box::new(status) as BoxError))
                }
            },
        }
    }

    /// Waits and tries again until an attempt commits or the retry window closes.
    pub(super) async fn retry(mut self, mut failure: Retry) -> CallResult {
        let mut attempt = 0u32;
        loop {
            let now = Instant::now();
            if now >= self.limit || !self.payload.replayable() {
                return self.give_up(failure, attempt, now);
            }
            if let Some(meter) = &mut self.meter {
                meter.retrying(tonic::Code::Unavailable as i32);
            }
            let delay = self.shared.retry.delay(attempt).min(self.limit - now);
            let details = match &failure {
                Retry::Response(_) => "'unavailable' status".to_owned(),
                Retry::Status(status) => format!("'unavailable' error; details: '{}'", status.message()),
            };
            tracing::debug!(
                target: "grpc_helper::client",
                "<RPC> << {}{} (will retry in {:.3}s because of {details})",
                self.shared.target,
                self.head.uri.path(),
                delay.as_secs_f64()
            );
            self.notice(now, &details);
            tokio::time::sleep(delay).await;
            attempt += 1;
            if let Some(meter) = &mut self.meter {
                meter.next_attempt();
            }
            let result = self.next().await;
            (self, failure) = match self.outcome(result) {
                Ok(answer) => return answer,
                Err(retry) => *retry,
            };
        }
    }

    /// Says at INFO that the client is waiting for its server: on the first retry, then every
    /// few seconds (a client started with no server is not silent for its whole window).
    fn notice(&self, now: Instant, details: &str) {
        {
            let mut next = self.shared.next_notice.lock();
            if next.is_some_and(|at| now < at) {
                return;
            }
            *next = Some(now + NOTICE_EVERY);
        }
        tracing::info!(
            target: "grpc_helper::client",
            "{} unavailable: retrying {} for {:.1}s more ({details})",
            self.shared.target,
            self.head.uri.path(),
            (self.limit - now).as_secs_f64()
        );
    }

    /// The last failure as the call's answer (an UNAVAILABLE error says how long it tried).
    fn give_up(mut self, failure: Retry, attempt: u32, now: Instant) -> CallResult {
        match failure {
            Retry::Response(response) => Ok(reply(response, self.shared, self.meter)),
            Retry::Status(status) => {
                end_meter(&mut self.meter, tonic::Code::Unavailable);
                Err(Box::new(tonic::Status::unavailable(format!(
                    "{} unavailable after {} attempt(s) in {:.1}s: {}",
                    self.shared.target,
                    attempt + 1,
                    now.duration_since(self.start).as_secs_f64(),
                    status.message()
                ))))
            }
        }
    }

    /// Sends the request again, with what is left of the deadline.
    async fn next(&self) -> Attempt {
        let mut request = http::Request::from_parts(copy_head(&self.head), self.payload.attempt_body());
        if let Some(deadline) = self.deadline {
            // The deadline covers every attempt: later ones get what is left.
            let left = deadline.saturating_duration_since(Instant::now());
            request.headers_mut().insert(GRPC_TIMEOUT, wire::timeout_value(left));
        }
        let mut channel = self.shared.channel.clone();
        match channel.ready().await {
            Ok(ready) => ready.call(request).await,
            Err(e) => Err(e),
        }
    }
}
