//! Why a stream stopped, as a value: control flow matches on the Kafka
//! error code, never on message text.

use rdkafka::types::RDKafkaErrorCode;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StreamError {
    /// The stream's definition cannot run (filters, schema file, ...).
    #[error("{0}")]
    Setup(String),
    #[error("cannot create the producer: {0}")]
    Client(String),
    #[error("cannot reach the cluster as {user:?}: {message}")]
    Unreachable { user: String, message: String },
    #[error(
        "user {user:?} may not write topic {topic:?} ({code}): declare a producer ACL for it in fink.toml and run `fink apply`"
    )]
    NotAuthorized { user: String, topic: String, code: RDKafkaErrorCode },
    #[error(
        "topic {topic:?} does not exist (or user {user:?} may not see it; {code}): declare it in fink.toml and run `fink apply`"
    )]
    UnknownTopic { user: String, topic: String, code: RDKafkaErrorCode },
    #[error("delivery to topic {topic:?} failed ({code}): {message}")]
    Delivery { topic: String, code: RDKafkaErrorCode, message: String },
    #[error("{0}")]
    State(String),
    /// A newer producer with the stream's transactional id took over (another
    /// instance, or a restarted one): this one must never write again.
    #[error(
        "fenced: another instance took over stream {stream:?} (a newer producer with transactional id {txn_id:?}); \
         this instance stopped it and does not write to it again"
    )]
    Fenced { stream: String, txn_id: String },
    #[error(
        "user {user:?} may not use transactional id {txn_id:?} ({code}): give it a producer ACL (role = \"producer\" \
         adds TransactionalId {prefix:?} prefixed Write and Describe) and run `fink apply`"
    )]
    TxnNotAuthorized { user: String, txn_id: String, prefix: String, code: RDKafkaErrorCode },
    /// A Python filter failed `max_failures` times in a row.
    #[error("{0}")]
    Filter(String),
    #[error("the stream's thread panicked: {0}")]
    Panicked(String),
}

impl StreamError {
    /// The error the broker or client gave for `topic`, with what to do.
    pub fn from_kafka(user: &str, topic: &str, code: RDKafkaErrorCode, message: String) -> StreamError {
        let (user, topic) = (user.to_string(), topic.to_string());
        match code {
            RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed => StreamError::NotAuthorized { user, topic, code },
            RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => {
                StreamError::UnknownTopic { user, topic, code }
            }
            _ => StreamError::Delivery { topic, code, message },
        }
    }

    /// A transactional producer's error: fenced, not authorized for its
    /// id, or a delivery error.
    pub fn from_txn(spec: &super::StreamSpec, txn_id: &str, e: &rdkafka::error::KafkaError) -> StreamError {
        let code = e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
        match code {
            RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch => {
                StreamError::Fenced { stream: spec.name.clone(), txn_id: txn_id.to_string() }
            }
            RDKafkaErrorCode::TransactionalIdAuthorizationFailed => StreamError::TxnNotAuthorized {
                user: spec.user.clone(),
                txn_id: txn_id.to_string(),
                prefix: txn_id.rsplit_once('.').map(|(g, _)| format!("{g}.")).unwrap_or_default(),
                code,
            },
            _ => StreamError::from_kafka(&spec.user, &spec.topic, code, e.to_string()),
        }
    }

    /// The Kafka error code, when the error came from Kafka.
    pub fn code(&self) -> Option<RDKafkaErrorCode> {
        match self {
            StreamError::NotAuthorized { code, .. }
            | StreamError::UnknownTopic { code, .. }
            | StreamError::Delivery { code, .. }
            | StreamError::TxnNotAuthorized { code, .. } => Some(*code),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_codes_pick_the_advice() {
        let e = StreamError::from_kafka("u", "t", RDKafkaErrorCode::TopicAuthorizationFailed, "x".into());
        assert!(matches!(e, StreamError::NotAuthorized { .. }));
        assert!(e.to_string().contains("producer ACL"), "{e}");
        let e = StreamError::from_kafka("u", "t", RDKafkaErrorCode::UnknownTopicOrPartition, "x".into());
        assert!(e.to_string().contains("does not exist"), "{e}");
        assert_eq!(e.code(), Some(RDKafkaErrorCode::UnknownTopicOrPartition));
        let e = StreamError::from_kafka("u", "t", RDKafkaErrorCode::MessageTimedOut, "slow".into());
        assert!(matches!(e, StreamError::Delivery { code: RDKafkaErrorCode::MessageTimedOut, .. }));
    }
}

/// Why a source could not be listed or a file read, as a value: the stream
/// decides what to do by kind, never by message text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// It may pass: the store is unreachable or slow, an I/O error
    /// (EIO, ESTALE, EMFILE, EACCES, ...), a file gone or changed since it
    /// was listed. Retried with backoff and shown as stalled; the file is
    /// never quarantined for it.
    #[error("{0}")]
    Transient(String),
    /// The file's bytes cannot be decoded (not Parquet/Avro, a damaged page,
    /// a checksum mismatch, a decoder panic): the file, or its rest, is
    /// quarantined and the stream goes on.
    #[error("{0}")]
    BadData(String),
    /// The source cannot be used as configured (its folder is missing, a
    /// client cannot be built): reported, and waited on.
    #[error("{0}")]
    Fatal(String),
}

impl SourceError {
    pub fn is_transient(&self) -> bool {
        matches!(self, SourceError::Transient(_))
    }
}
