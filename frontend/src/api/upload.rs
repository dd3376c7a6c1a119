//! File uploads: the GraphQL multipart request spec (`operations`, `map`, then the file
//! parts) sent with `XMLHttpRequest`, whose upload events drive a real progress bar.
//!
//! `fetch` cannot report upload progress, hence XHR here and only here.

use futures_channel::oneshot;
use graphql_client::GraphQLQuery;
use wasm_bindgen::{closure::Closure, JsCast};
use web_sys::{FormData, ProgressEvent, XmlHttpRequest};

use super::http::{self, ENDPOINT};
use super::{session, ApiError};

/// Bytes sent so far and the total, as the browser reports them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    /// Bytes of the request body sent.
    pub sent: f64,
    /// Size of the request body.
    pub total: f64,
}

impl Progress {
    /// The fraction sent, 0 to 1.
    pub fn fraction(self) -> f64 {
        if self.total > 0.0 {
            (self.sent / self.total).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

/// The `map` part: which variable each numbered file part fills.
fn file_map(variable: &str) -> String {
    format!(r#"{{"0":["variables.{variable}"]}}"#)
}

/// Aborts the request and detaches the handlers when the caller stops waiting (for
/// example when the page is left mid-upload), so no callback outlives its closure.
struct InFlight {
    xhr: XmlHttpRequest,
    done: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.xhr.set_onloadend(None);
        if let Ok(upload) = self.xhr.upload() {
            upload.set_onprogress(None);
        }
        if !self.done {
            let _ = self.xhr.abort();
        }
    }
}

/// Sends operation `Q` with `file` as the value of its `$variable` (declared `Upload!`;
/// its value in `variables` must serialise as `null`), calling `on_progress` as bytes go.
pub async fn post_file<Q: GraphQLQuery>(
    variables: Q::Variables,
    variable: &str,
    file: &web_sys::File,
    on_progress: impl Fn(Progress) + 'static,
) -> Result<serde_json::Value, ApiError> {
    let operations =
        serde_json::to_string(&Q::build_query(variables)).map_err(|_| ApiError::unexpected())?;
    let form = FormData::new().map_err(|_| ApiError::unexpected())?;
    form.append_with_str("operations", &operations)
        .and_then(|()| form.append_with_str("map", &file_map(variable)))
        .and_then(|()| form.append_with_blob_and_filename("0", file, &file.name()))
        .map_err(|_| ApiError::unexpected())?;

    let xhr = XmlHttpRequest::new().map_err(|_| ApiError::unexpected())?;
    xhr.open("POST", ENDPOINT)
        .map_err(|_| ApiError::unexpected())?;
    let token = session::token();
    let _ = xhr.set_request_header("Accept", "application/json");
    if let Some(token) = &token {
        let _ = xhr.set_request_header("Authorization", &format!("Bearer {token}"));
    }

    let progress = Closure::<dyn FnMut(ProgressEvent)>::new(move |event: ProgressEvent| {
        if event.length_computable() {
            on_progress(Progress {
                sent: event.loaded(),
                total: event.total(),
            });
        }
    });
    let upload = xhr.upload().map_err(|_| ApiError::unexpected())?;
    upload.set_onprogress(Some(progress.as_ref().unchecked_ref()));

    let (finished, wait) = oneshot::channel::<()>();
    let mut finished = Some(finished);
    let ended = Closure::<dyn FnMut()>::new(move || {
        if let Some(finished) = finished.take() {
            let _ = finished.send(());
        }
    });
    xhr.set_onloadend(Some(ended.as_ref().unchecked_ref()));

    let mut in_flight = InFlight {
        xhr: xhr.clone(),
        done: false,
    };
    xhr.send_with_opt_form_data(Some(&form))
        .map_err(|_| ApiError::network())?;
    let _ = wait.await;
    in_flight.done = true;
    drop(in_flight);
    drop((progress, ended));

    // Status 0: the request never got an answer (network error or abort).
    let status = xhr.status().unwrap_or(0);
    if status == 0 {
        return Err(ApiError::network());
    }
    let body = xhr.response_text().ok().flatten().unwrap_or_default();
    http::decode(status, &body, token.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_points_part_zero_at_the_variable() {
        assert_eq!(file_map("file"), r#"{"0":["variables.file"]}"#);
    }

    #[test]
    fn progress_is_a_fraction() {
        let half = Progress {
            sent: 50.0,
            total: 100.0,
        };
        assert!((half.fraction() - 0.5).abs() < f64::EPSILON);
        let unknown = Progress {
            sent: 10.0,
            total: 0.0,
        };
        assert!(unknown.fraction().abs() < f64::EPSILON);
    }
}
