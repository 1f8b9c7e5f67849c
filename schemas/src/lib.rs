//! The public event contract: one JSON Schema (draft 2020-12) per event type and version,
//! in `schemas/events/<type>.v<N>.json`, embedded at build time, and a validator for wire
//! events (`{"type", "version", "data"}`) against them.

use std::collections::HashMap;

use serde_json::Value;
use thiserror::Error;

/// One schema file: the event type and version it describes, and its text.
#[derive(Debug, Clone, Copy)]
pub struct EventSchema {
    pub event_type: &'static str,
    pub version: u16,
    pub json: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/catalogue.rs"));

/// The schema of the Kafka envelope around every event.
pub const ENVELOPE_SCHEMA: &str = include_str!("../envelope.v1.json");

#[derive(Debug, Error)]
pub enum SchemaError {
    #[error("schema for {event_type} v{version} is not valid JSON: {source}")]
    Unparsable {
        event_type: &'static str,
        version: u16,
        source: serde_json::Error,
    },
    #[error("schema for {event_type} v{version} does not compile: {message}")]
    Uncompilable {
        event_type: &'static str,
        version: u16,
        message: String,
    },
    #[error("the event has no string `type` and integer `version`")]
    NotAnEvent,
    #[error("no schema for event type {event_type} version {version}")]
    NoSchema { event_type: String, version: u64 },
    #[error("{event_type} v{version} does not match its schema: {errors:?}")]
    Invalid {
        event_type: String,
        version: u64,
        errors: Vec<String>,
    },
}

/// All schemas compiled once, with `format` checked (uuid, date-time).
pub struct ContractValidator {
    validators: HashMap<(&'static str, u16), jsonschema::Validator>,
    envelope: jsonschema::Validator,
}

impl std::fmt::Debug for ContractValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContractValidator")
            .field("schemas", &self.validators.len())
            .finish()
    }
}

fn compile(
    event_type: &'static str,
    version: u16,
    json: &str,
) -> Result<jsonschema::Validator, SchemaError> {
    let value: Value = serde_json::from_str(json).map_err(|source| SchemaError::Unparsable {
        event_type,
        version,
        source,
    })?;
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&value)
        .map_err(|e| SchemaError::Uncompilable {
            event_type,
            version,
            message: e.to_string(),
        })
}

/// Validates `instance`; every violation is reported with where it is.
fn check(
    validator: &jsonschema::Validator,
    instance: &Value,
    event_type: &str,
    version: u64,
) -> Result<(), SchemaError> {
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(SchemaError::Invalid {
            event_type: event_type.to_owned(),
            version,
            errors,
        })
    }
}

impl ContractValidator {
    pub fn new() -> Result<Self, SchemaError> {
        let mut validators = HashMap::new();
        for schema in SCHEMAS {
            validators.insert(
                (schema.event_type, schema.version),
                compile(schema.event_type, schema.version, schema.json)?,
            );
        }
        let envelope = compile("envelope", 1, ENVELOPE_SCHEMA)?;
        Ok(Self {
            validators,
            envelope,
        })
    }

    /// Checks a Kafka message: the envelope against its schema, and the event inside
    /// against the schema its `type` and `schemaVersion` name.
    pub fn validate_envelope(&self, message: &Value) -> Result<(), SchemaError> {
        check(&self.envelope, message, "envelope", 1)?;
        self.validate(&serde_json::json!({
            "type": message["type"],
            "version": message["schemaVersion"],
            "data": message["data"],
        }))
    }

    /// Checks one wire event against the schema its `type` and `version` name.
    pub fn validate(&self, event: &Value) -> Result<(), SchemaError> {
        let event_type = event
            .get("type")
            .and_then(Value::as_str)
            .ok_or(SchemaError::NotAnEvent)?;
        let version = event
            .get("version")
            .and_then(Value::as_u64)
            .ok_or(SchemaError::NotAnEvent)?;
        let validator = u16::try_from(version)
            .ok()
            .and_then(|v| self.validators.get(&(event_type, v)))
            .ok_or_else(|| SchemaError::NoSchema {
                event_type: event_type.to_owned(),
                version,
            })?;
        check(validator, event, event_type, version)
    }
}
