//! The value types' rules as OpenAPI schemas (feature `openapi`): the APIs' documents state
//! what [`crate::values`] accepts, from the same constants its parsers are tested against.

use utoipa::openapi::schema::SchemaType;
use utoipa::openapi::{Object, ObjectBuilder, Type};

use crate::values::Text;

fn string(min: Option<usize>, max: usize, pattern: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(min)
        .max_length(Some(max))
        .pattern(Some(pattern))
}

/// [`Text::parse`]: a title, a name, a description that must not be blank.
pub fn text() -> Object {
    string(Some(1), Text::MAX_CHARS, Text::PATTERN).build()
}

/// [`Text::parse_optional`]: a description that may be empty.
pub fn optional_text() -> Object {
    string(None, Text::MAX_CHARS, Text::OPTIONAL_PATTERN).build()
}

/// [`Text::parse_reference`]: the shop's order id.
pub fn reference() -> Object {
    string(Some(1), Text::MAX_REFERENCE_CHARS, Text::REFERENCE_PATTERN).build()
}

/// [`reference`], or `null` (absent).
pub fn optional_reference() -> Object {
    string(Some(1), Text::MAX_REFERENCE_CHARS, Text::REFERENCE_PATTERN)
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .build()
}
