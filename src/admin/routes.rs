//! The admin endpoint's routes: which path answers which method, and each answer's status,
//! type and body (DESIGN.md "Operations").

use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;

use crate::policy::Segment;
use crate::proxy::Shared;

/// What the admin endpoint serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Healthz,
    Readyz,
    Metrics,
    Policy,
    Connections,
    Reload,
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    To(Route),
    /// 404.
    NotFound,
    /// 405, with the methods the path does answer (`Allow`).
    MethodNotAllowed(&'static str),
}

/// Routes by exact path (no query strings or trailing slashes are special) and method:
/// the reads answer GET and HEAD, `/reload` only POST.
pub fn route(method: &Method, path: &str) -> Routed {
    let route = match path {
        "/healthz" => Route::Healthz,
        "/readyz" => Route::Readyz,
        "/metrics" => Route::Metrics,
        "/policy" => Route::Policy,
        "/connections" => Route::Connections,
        "/reload" => Route::Reload,
        _ => return Routed::NotFound,
    };
    let (allowed, allow) = match route {
        Route::Reload => (method == Method::POST, "POST"),
        _ => (method == Method::GET || method == Method::HEAD, "GET, HEAD"),
    };
    if allowed {
        Routed::To(route)
    } else {
        Routed::MethodNotAllowed(allow)
    }
}

type Answer = Response<Full<Bytes>>;

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";
/// The Prometheus text exposition format.
const METRICS: &str = "text/plain; version=0.0.4; charset=utf-8";

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Answer {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Answer {
    match serde_json::to_vec(value) {
        Ok(mut body) => {
            body.push(b'\n');
            reply(status, JSON, body)
        }
        Err(err) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            TEXT,
            format!("cannot encode the answer: {err}\n"),
        ),
    }
}

#[derive(Serialize)]
struct PolicyDoc<'a> {
    version: &'a str,
    loaded_at: String,
    segments: &'a [Segment],
}

#[derive(Serialize)]
struct Reloaded<'a> {
    version: &'a str,
}

#[derive(Serialize)]
struct ReloadFailed {
    /// One `FILE:LINE:COL: message` per problem.
    errors: Vec<String>,
}

/// Answers one request.
pub async fn answer(request: Request<Incoming>, shared: &Arc<Shared>) -> Answer {
    let route = match route(request.method(), request.uri().path()) {
        Routed::To(route) => route,
        Routed::NotFound => return reply(StatusCode::NOT_FOUND, TEXT, "not found\n"),
        Routed::MethodNotAllowed(allow) => {
            let mut r = reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "method not allowed\n");
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
            return r;
        }
    };
    match route {
        Route::Healthz => reply(StatusCode::OK, TEXT, "ok\n"),
        Route::Readyz if shared.draining() => {
            reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, "draining\n")
        }
        // The endpoint starts only once the listeners are bound and a policy is loaded.
        Route::Readyz => reply(StatusCode::OK, TEXT, "ready\n"),
        Route::Metrics => {
            let version = shared.policy().version.clone();
            let body = shared.metrics().render(&version, shared.events_dropped());
            reply(StatusCode::OK, METRICS, body)
        }
        Route::Policy => {
            let now = shared.in_force();
            json(
                StatusCode::OK,
                &PolicyDoc {
                    version: &now.policy.version,
                    loaded_at: humantime::format_rfc3339_millis(now.loaded_at).to_string(),
                    segments: &now.policy.segments,
                },
            )
        }
        Route::Connections => json(StatusCode::OK, &shared.metrics().connections.snapshot()),
        Route::Reload => match shared.reload().await {
            Ok(version) => json(StatusCode::OK, &Reloaded { version: &version }),
            Err(problems) => json(
                StatusCode::UNPROCESSABLE_ENTITY,
                &ReloadFailed {
                    errors: problems.0.iter().map(ToString::to_string).collect(),
                },
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_methods() {
        let get = Method::GET;
        for (path, r) in [
            ("/healthz", Route::Healthz),
            ("/readyz", Route::Readyz),
            ("/metrics", Route::Metrics),
            ("/policy", Route::Policy),
            ("/connections", Route::Connections),
        ] {
            assert_eq!(route(&get, path), Routed::To(r));
            assert_eq!(route(&Method::HEAD, path), Routed::To(r));
            assert_eq!(
                route(&Method::POST, path),
                Routed::MethodNotAllowed("GET, HEAD")
            );
            assert_eq!(
                route(&Method::DELETE, path),
                Routed::MethodNotAllowed("GET, HEAD")
            );
        }
        assert_eq!(route(&Method::POST, "/reload"), Routed::To(Route::Reload));
        assert_eq!(route(&get, "/reload"), Routed::MethodNotAllowed("POST"));
        for path in ["/", "/metrics/", "/healthz/x", "/METRICS", "", "/reload/"] {
            assert_eq!(route(&get, path), Routed::NotFound, "{path:?}");
        }
    }
}
