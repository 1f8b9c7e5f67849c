//! What both OpenAPI documents share (ADR 12): the problem-details schema, the bearer scheme,
//! and the answers every route can give whatever its handler does — the edge's 400, the
//! gate's 401/403/429, the body limit's 413, load shedding's 503 — with their headers. The
//! handlers' annotations document only what is their own.

use serde::Serialize;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Object, ObjectBuilder, Ref, RefOr, Required, Schema, Type};
use utoipa::ToSchema;

/// A refusal (RFC 9457), as [`crate::body`] builds it; served as `application/problem+json`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(title = "Problem")]
pub struct Problem {
    /// `urn:promo:problem:<code in kebab case>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The status' reason phrase.
    pub title: String,
    pub status: u16,
    /// What was wrong, for a person.
    pub detail: String,
    /// Machine-readable: `INVALID_REQUEST`, `SOLD_OUT`, `RATE_LIMITED`, …
    pub code: String,
    /// The input at fault: a body field, a path segment, a query parameter or a header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// The problem media type.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The answers and headers every route shares, and the bearer scheme on every route but
/// `open` ones (sign-up, sign-in, health).
#[derive(Debug)]
pub struct Conventions {
    pub open: &'static [&'static str],
}

impl utoipa::Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT with `sub`, `role` (admin, service or user), `iss`, `aud`, `exp`: \
                         `POST /api/v1/auth/login`, or `promo-token` for admins and services",
                    ))
                    .build(),
            ),
        );
        components.schemas.insert(
            "Problem".into(),
            <Problem as utoipa::PartialSchema>::schema(),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            let open = self.open.contains(&path.as_str());
            let operations = [
                (&mut item.get, false),
                (&mut item.post, true),
                (&mut item.put, true),
                (&mut item.delete, false),
            ];
            for (operation, has_body) in operations {
                if let Some(operation) = operation.as_mut() {
                    conventions(operation, open, has_body);
                }
            }
        }
    }
}

fn conventions(operation: &mut Operation, open: bool, has_body: bool) {
    if !open {
        operation
            .security
            .get_or_insert_with(Vec::new)
            .push(SecurityRequirement::new("bearer", Vec::<String>::new()));
    }
    header_param(
        operation,
        "X-Correlation-Id",
        "Carried into every event the request records and into its log lines: \
         1 to 128 visible ASCII characters (absent: the request id is used)",
        visible_ascii(128),
    );
    problem_answer(
        operation,
        "400",
        "A malformed body, path segment, query parameter or header (`field` names it)",
    );
    problem_answer(
        operation,
        "503",
        "A dependency is down, or the service is overloaded: retry after `Retry-After`",
    );
    if !open {
        problem_answer(operation, "401", "No token, or a token that is not valid");
        problem_answer(
            operation,
            "403",
            "The token's role may not do this, or the data is another user's",
        );
        problem_answer(
            operation,
            "429",
            "Over the caller's rate limit: retry after `Retry-After`",
        );
    }
    if has_body {
        problem_answer(operation, "413", "The body is over the server's limit");
        problem_answer(
            operation,
            "415",
            "A body that is not sent as `Content-Type: application/json`",
        );
    }
    // Every 429 and 503, the handlers' own too, says when to retry.
    answer_header(
        operation,
        |status| matches!(status, "429" | "503"),
        "Retry-After",
        "Seconds to wait before retrying",
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0)),
    );
    answer_header(
        operation,
        |_| true,
        "X-Request-Id",
        "The server's id of this request (the events' causationId)",
        string(),
    );
}

/// An optional request header of `operation`.
pub fn header_param(
    operation: &mut Operation,
    name: &str,
    description: &str,
    schema: impl Into<RefOr<Schema>>,
) {
    operation.parameters.get_or_insert_with(Vec::new).push(
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(description))
            .schema(Some(schema))
            .build(),
    );
}

/// Header `name` on every answer of `operation` whose status `matches`.
pub fn answer_header(
    operation: &mut Operation,
    matches: impl Fn(&str) -> bool,
    name: &str,
    description: &str,
    schema: impl Into<RefOr<Schema>>,
) {
    let header = HeaderBuilder::new()
        .schema(schema)
        .description(Some(description))
        .build();
    for (status, response) in operation.responses.responses.iter_mut() {
        if let (true, RefOr::T(response)) = (matches(status), response) {
            response.headers.insert(name.into(), header.clone());
        }
    }
}

/// A problem+json answer for `status`, unless the handler documents its own.
pub fn problem_answer(operation: &mut Operation, status: &str, description: &str) {
    operation
        .responses
        .responses
        .entry(status.into())
        .or_insert_with(|| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        PROBLEM_JSON,
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("Problem")))
                            .build(),
                    )
                    .build(),
            )
        });
}

/// Visible ASCII (`!` to `~`), as a pattern's character class.
pub const VISIBLE_ASCII: &str = "[!-~]";

/// 1 to `max` visible ASCII characters: the correlation id, the idempotency key.
pub fn visible_ascii(max: usize) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(format!("^{VISIBLE_ASCII}+$")))
        .build()
}

fn string() -> Object {
    ObjectBuilder::new().schema_type(Type::String).build()
}

/// Swagger UI at `ui` (its assets served from the binary) showing `document`, served as JSON
/// at `{ui}/openapi.json`; `/api/docs` redirects to the UI. Open like `/health`: the document
/// describes the API, it grants nothing.
pub fn docs<S: Clone + Send + Sync + 'static>(
    ui: &'static str,
    document: utoipa::openapi::OpenApi,
) -> axum::Router<S> {
    let swagger: axum::Router<S> = utoipa_swagger_ui::SwaggerUi::new(format!("{ui}/"))
        .url(format!("{ui}/openapi.json"), document)
        .into();
    swagger.route(
        "/api/docs",
        axum::routing::get(move || async move {
            axum::response::Redirect::temporary(&format!("{ui}/"))
        }),
    )
}
