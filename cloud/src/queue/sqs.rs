//! An SQS queue (or any endpoint speaking SQS's JSON protocol, such as moto server).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName};
use tokio::sync::OnceCell;
use tracing::warn;

use super::{
    MAX_BATCH, MAX_VISIBILITY, MAX_WAIT, Message, Queue, QueueDepth, QueueError, QueueSettings,
};

/// An SQS queue.
///
/// Receipts: SQS hands out a new receipt handle on every receive. Deleting with an older
/// receipt of the same message is accepted by SQS (the documentation says the message "might
/// not be deleted"; moto deletes it); deleting an already deleted message succeeds.
/// Changing the visibility of a deleted message fails with [`QueueError::InvalidReceipt`].
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
    /// The dead-letter queue named by the queue's redrive policy, `None` when it has none.
    /// Looked up on the first [`Queue::dead_letter`], then kept (shared by clones): a
    /// redrive policy changed later takes effect on restart.
    dead_letter_url: Arc<OnceCell<Option<String>>>,
}

impl SqsQueue {
    /// The message attribute (a `String`) that says why [`Queue::dead_letter`] moved a
    /// message.
    pub const REASON_ATTRIBUTE: &str = "spherecast-reason";
    /// Longest reason kept in [`Self::REASON_ATTRIBUTE`], in characters.
    pub const MAX_REASON_CHARS: usize = 256;
    /// How long [`Queue::dead_letter`] hides the message while it copies and deletes it; if
    /// either fails, the message is received again after this.
    const DEAD_LETTER_GRACE: Duration = Duration::from_secs(60);

    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> SqsQueue {
        SqsQueue {
            client,
            url: queue_url.into(),
            dead_letter_url: Arc::default(),
        }
    }

    /// The queue called `name` in the client's account and region.
    pub async fn from_name(
        client: aws_sdk_sqs::Client,
        name: &str,
    ) -> Result<SqsQueue, QueueError> {
        let url = SqsQueue::lookup_url(&client, name).await?;
        Ok(SqsQueue::new(client, url))
    }

    /// Creates (or finds, when the attributes match) the queue `name` and its dead-letter
    /// queue `<name>-dead-letter`, with a redrive policy after `settings.max_receive_count`
    /// receives; returns both. For moto server, fresh accounts and tests: in production the
    /// queues come from the infrastructure templates.
    pub async fn create_with_dead_letter(
        client: aws_sdk_sqs::Client,
        name: &str,
        settings: &QueueSettings,
    ) -> Result<(SqsQueue, SqsQueue), QueueError> {
        let dead_letter_name = format!("{name}-dead-letter");
        let created = client
            .create_queue()
            .queue_name(&dead_letter_name)
            .send()
            .await
            .map_err(|err| sdk_error(err, "CreateQueue", &dead_letter_name, None))?;
        let dead_letter_url = created.queue_url.unwrap_or_default();
        let attributes = client
            .get_queue_attributes()
            .queue_url(&dead_letter_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|err| sdk_error(err, "GetQueueAttributes", &dead_letter_url, None))?;
        let Some(dead_letter_arn) = attributes
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        else {
            return Err(QueueError::Rejected {
                op: "GetQueueAttributes",
                message: format!("queue {dead_letter_url} reported no QueueArn"),
            });
        };
        let redrive = serde_json::json!({
            "deadLetterTargetArn": dead_letter_arn,
            "maxReceiveCount": settings.max_receive_count.max(1).to_string(),
        });
        let created = client
            .create_queue()
            .queue_name(name)
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                whole_seconds(settings.visibility_timeout, MAX_VISIBILITY).to_string(),
            )
            .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
            .send()
            .await
            .map_err(|err| sdk_error(err, "CreateQueue", name, None))?;
        let url = created.queue_url.unwrap_or_default();
        Ok((
            SqsQueue::new(client.clone(), url),
            SqsQueue::new(client, dead_letter_url),
        ))
    }

    /// The URL of the queue called `name` (GetQueueUrl).
    pub async fn lookup_url(
        client: &aws_sdk_sqs::Client,
        name: &str,
    ) -> Result<String, QueueError> {
        let out = client
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .map_err(|err| sdk_error(err, "GetQueueUrl", name, None))?;
        out.queue_url.ok_or_else(|| QueueError::Rejected {
            op: "GetQueueUrl",
            message: format!("no URL returned for queue {name:?}"),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn client(&self) -> &aws_sdk_sqs::Client {
        &self.client
    }

    /// The URL of the dead-letter queue, `None` when the queue has no redrive policy.
    async fn dead_letter_url(&self) -> Result<Option<&str>, QueueError> {
        let url = self
            .dead_letter_url
            .get_or_try_init(|| self.lookup_dead_letter_url())
            .await?;
        Ok(url.as_deref())
    }

    /// Reads the redrive policy (GetQueueAttributes) and finds its target (GetQueueUrl).
    async fn lookup_dead_letter_url(&self) -> Result<Option<String>, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|err| sdk_error(err, "GetQueueAttributes", &self.url, None))?;
        let Some(policy) = out
            .attributes
            .and_then(|mut attributes| attributes.remove(&QueueAttributeName::RedrivePolicy))
            .filter(|policy| !policy.is_empty())
        else {
            return Ok(None);
        };
        let target = DeadLetterTarget::from_redrive_policy(&policy).map_err(|problem| {
            QueueError::Rejected {
                op: "GetQueueAttributes",
                message: format!(
                    "queue {} has the redrive policy {policy:?}, which {problem}; fix the queue's RedrivePolicy attribute",
                    self.url
                ),
            }
        })?;
        let out = self
            .client
            .get_queue_url()
            .queue_name(&target.name)
            .queue_owner_aws_account_id(&target.account)
            .send()
            .await
            .map_err(|err| sdk_error(err, "GetQueueUrl", &target.arn, None))?;
        let url = out.queue_url.ok_or_else(|| QueueError::Rejected {
            op: "GetQueueUrl",
            message: format!("no URL returned for the dead-letter queue {}", target.arn),
        })?;
        Ok(Some(url))
    }
}

/// The dead-letter queue named by a redrive policy's `deadLetterTargetArn`.
#[derive(Debug, PartialEq, Eq)]
struct DeadLetterTarget {
    arn: String,
    account: String,
    name: String,
}

impl DeadLetterTarget {
    /// Parses `{"deadLetterTargetArn": "arn:PARTITION:sqs:REGION:ACCOUNT:NAME", ...}`; the
    /// error completes the sentence "the redrive policy ...".
    fn from_redrive_policy(policy: &str) -> Result<DeadLetterTarget, String> {
        let policy: serde_json::Value =
            serde_json::from_str(policy).map_err(|err| format!("is not JSON ({err})"))?;
        let arn = policy
            .get("deadLetterTargetArn")
            .and_then(serde_json::Value::as_str)
            .ok_or("has no deadLetterTargetArn string")?;
        match arn.splitn(6, ':').collect::<Vec<_>>()[..] {
            ["arn", _partition, "sqs", _region, account, name]
                if !account.is_empty() && !name.is_empty() =>
            {
                Ok(DeadLetterTarget {
                    arn: arn.to_owned(),
                    account: account.to_owned(),
                    name: name.to_owned(),
                })
            }
            _ => Err(format!(
                "names {arn:?}, not a queue ARN (arn:aws:sqs:REGION:ACCOUNT:NAME)"
            )),
        }
    }
}

/// What SQS accepts as a `String` attribute value: non-empty, at most
/// [`SqsQueue::MAX_REASON_CHARS`] characters, none outside XML's character set (those become
/// U+FFFD).
fn reason_value(reason: &str) -> String {
    let value: String = reason
        .chars()
        .take(SqsQueue::MAX_REASON_CHARS)
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'.. => c,
            _ => char::REPLACEMENT_CHARACTER,
        })
        .collect();
    if value.is_empty() {
        "(no reason given)".to_owned()
    } else {
        value
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, body: &str) -> Result<String, QueueError> {
        super::check_body_size(body)?;
        let out = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .map_err(|err| sdk_error(err, "SendMessage", &self.url, None))?;
        Ok(out.message_id.unwrap_or_default())
    }

    async fn receive(&self, max: u32, wait: Duration) -> Result<Vec<Message>, QueueError> {
        // `AttributeNames` is deprecated in favour of `MessageSystemAttributeNames`, but moto
        // 5.1 reads only the former; SQS accepts both.
        #[allow(deprecated)]
        let request = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, MAX_BATCH) as i32)
            .wait_time_seconds(whole_seconds(wait, MAX_WAIT))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .attribute_names(QueueAttributeName::from("ApproximateReceiveCount"));
        let out = request
            .send()
            .await
            .map_err(|err| sdk_error(err, "ReceiveMessage", &self.url, None))?;
        let messages = out
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|message| {
                let receive_count = message
                    .attributes
                    .as_ref()
                    .and_then(|attributes| {
                        attributes.get(&MessageSystemAttributeName::ApproximateReceiveCount)
                    })
                    .and_then(|count| count.parse().ok())
                    .unwrap_or(1);
                Message {
                    id: message.message_id.unwrap_or_default(),
                    receipt: message.receipt_handle.unwrap_or_default(),
                    body: message.body.unwrap_or_default(),
                    receive_count,
                }
            })
            .collect();
        Ok(messages)
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|err| sdk_error(err, "DeleteMessage", &self.url, Some(receipt)))?;
        Ok(())
    }

    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(whole_seconds(timeout, MAX_VISIBILITY))
            .send()
            .await
            .map_err(|err| sdk_error(err, "ChangeMessageVisibility", &self.url, Some(receipt)))?;
        Ok(())
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|err| sdk_error(err, "GetQueueAttributes", &self.url, None))?;
        let attributes = out.attributes.unwrap_or_default();
        let count = |name: &QueueAttributeName| -> Result<u64, QueueError> {
            let value = attributes.get(name).ok_or_else(|| QueueError::Rejected {
                op: "GetQueueAttributes",
                message: format!("queue {} did not report {}", self.url, name.as_str()),
            })?;
            value.parse().map_err(|_| QueueError::Rejected {
                op: "GetQueueAttributes",
                message: format!(
                    "queue {} reported {} = {value:?}, not a count",
                    self.url,
                    name.as_str()
                ),
            })
        };
        Ok(QueueDepth {
            visible: count(&QueueAttributeName::ApproximateNumberOfMessages)?,
            in_flight: count(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible)?,
            delayed: count(&QueueAttributeName::ApproximateNumberOfMessagesDelayed)?,
        })
    }

    /// The dead-letter queue is the target of the queue's redrive policy. It gets a copy of
    /// `body` (a new message, with its own id and receive count) carrying `reason` in the
    /// message attribute [`SqsQueue::REASON_ATTRIBUTE`] (cut to
    /// [`SqsQueue::MAX_REASON_CHARS`] characters); then the original is deleted. Copy first:
    /// a failure in between leaves the message in both queues (so it may reach the
    /// dead-letter queue twice), never in neither.
    ///
    /// Before copying, the receipt is checked by changing the message's visibility (to a
    /// minute, which the delete ends): SQS has no other way to check a receipt, and would
    /// otherwise accept deleting with the receipt of a deleted message (moto does), so a
    /// message already handled would be copied anyway. An invalid receipt, or that of a
    /// deleted message, is therefore [`QueueError::InvalidReceipt`] with nothing sent, as for
    /// the embedded queue. So is a receipt whose visibility timeout has already ended, which
    /// SQS no longer considers in flight.
    async fn dead_letter(
        &self,
        receipt: &str,
        body: &str,
        reason: &str,
    ) -> Result<bool, QueueError> {
        let Some(dead_letter_url) = self.dead_letter_url().await? else {
            return Ok(false);
        };
        super::check_body_size(body)?;
        self.change_visibility(receipt, SqsQueue::DEAD_LETTER_GRACE)
            .await?;
        let reason = reason_value(reason);
        let attribute = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(&reason)
            .build()
            .expect("the data type is set");
        let copy = self
            .client
            .send_message()
            .queue_url(dead_letter_url)
            .message_body(body)
            .message_attributes(SqsQueue::REASON_ATTRIBUTE, attribute)
            .send()
            .await
            .map_err(|err| sdk_error(err, "SendMessage", dead_letter_url, None))?;
        let copy_id = copy.message_id.unwrap_or_default();
        if let Err(err) = self.delete(receipt).await {
            warn!(queue = %self.url, dead_letter = %dead_letter_url, %copy_id, error = %err, "Message copied to the dead-letter queue but not deleted from its queue; it may be received again.");
            return Err(err);
        }
        warn!(queue = %self.url, dead_letter = %dead_letter_url, %copy_id, %reason, "Message moved to the dead-letter queue; it can never succeed.");
        Ok(true)
    }
}

/// Whole seconds for SQS, rounded up (a wait of 0.5 s is a 1 s wait, not a short poll) and
/// clamped to SQS's limit.
fn whole_seconds(duration: Duration, max: Duration) -> i32 {
    let duration = duration.min(max);
    let seconds = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    seconds as i32
}

/// Maps an SDK error: network trouble, timeouts, 5xx and throttling are transient
/// (`Unreachable`); an invalid or outdated receipt is `InvalidReceipt`; the rest `Rejected`.
/// `target` is the queue URL (or name); `receipt` the receipt handle the call used, if any.
fn sdk_error<E>(
    err: SdkError<E>,
    op: &'static str,
    target: &str,
    receipt: Option<&str>,
) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let detail = DisplayErrorContext(&err).to_string();
    match &err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            // Codes come as `ReceiptHandleIsInvalid`, `AWS.SimpleQueueService.NonExistentQueue`
            // or `com.amazonaws.sqs#QueueDoesNotExist` depending on protocol and service.
            let code = err
                .code()
                .unwrap_or_default()
                .rsplit(['.', '#'])
                .next()
                .unwrap_or_default();
            match (code, receipt) {
                (
                    "ReceiptHandleIsInvalid" | "InvalidReceiptHandle" | "MessageNotInflight",
                    Some(receipt),
                ) => QueueError::InvalidReceipt(receipt.to_owned()),
                ("QueueDoesNotExist" | "NonExistentQueue", _) => QueueError::Rejected {
                    op,
                    message: format!(
                        "queue {target} does not exist; check the queue URL or name and the region ({detail})"
                    ),
                },
                _ if status >= 500 || is_throttling(code) => QueueError::Unreachable {
                    op,
                    message: format!(
                        "{detail} (queue {target}, HTTP {status}); the service is overloaded or failing, retry later"
                    ),
                },
                _ if status == 403 => QueueError::Rejected {
                    op,
                    message: format!(
                        "access denied to queue {target}; check the credentials, region and queue policy ({detail})"
                    ),
                },
                _ => QueueError::Rejected {
                    op,
                    message: format!("{detail} (queue {target}, HTTP {status})"),
                },
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            QueueError::Unreachable {
                op,
                message: format!(
                    "{detail} (queue {target}); check the endpoint URL and the network, then retry"
                ),
            }
        }
        _ => QueueError::Rejected {
            op,
            message: format!("{detail} (queue {target})"),
        },
    }
}

fn is_throttling(code: &str) -> bool {
    matches!(
        code,
        "RequestThrottled"
            | "ThrottlingException"
            | "Throttling"
            | "KmsThrottled"
            | "ServiceUnavailable"
            | "InternalError"
            | "InternalFailure"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_target_comes_from_the_redrive_policy_arn() {
        let policy = r#"{"deadLetterTargetArn":"arn:aws:sqs:eu-west-1:123456789012:jobs-dead-letter","maxReceiveCount":"3"}"#;
        assert_eq!(
            DeadLetterTarget::from_redrive_policy(policy).unwrap(),
            DeadLetterTarget {
                arn: "arn:aws:sqs:eu-west-1:123456789012:jobs-dead-letter".to_owned(),
                account: "123456789012".to_owned(),
                name: "jobs-dead-letter".to_owned(),
            }
        );
        let numeric =
            r#"{"deadLetterTargetArn":"arn:aws-cn:sqs:cn-north-1:1:dlq","maxReceiveCount":3}"#;
        assert_eq!(
            DeadLetterTarget::from_redrive_policy(numeric).unwrap().name,
            "dlq"
        );
    }

    #[test]
    fn malformed_redrive_policy_is_explained() {
        for (policy, says) in [
            ("not json", "is not JSON"),
            (r#"{"maxReceiveCount":3}"#, "no deadLetterTargetArn"),
            (
                r#"{"deadLetterTargetArn":"arn:aws:sns:us-east-1:1:topic"}"#,
                "not a queue ARN",
            ),
            (
                r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1::dlq"}"#,
                "not a queue ARN",
            ),
        ] {
            let err = DeadLetterTarget::from_redrive_policy(policy).unwrap_err();
            assert!(err.contains(says), "{policy}: {err}");
        }
    }

    #[test]
    fn reason_is_cut_and_made_acceptable_to_sqs() {
        assert_eq!(
            reason_value("bad input: no video track"),
            "bad input: no video track"
        );
        assert_eq!(reason_value(""), "(no reason given)");
        assert_eq!(reason_value("a\u{0}b\tc"), "a\u{FFFD}b\tc");
        let long = "é".repeat(SqsQueue::MAX_REASON_CHARS + 10);
        assert_eq!(reason_value(&long), "é".repeat(SqsQueue::MAX_REASON_CHARS));
    }

    #[test]
    fn durations_round_up_to_whole_seconds_within_the_limit() {
        assert_eq!(whole_seconds(Duration::ZERO, MAX_WAIT), 0);
        assert_eq!(whole_seconds(Duration::from_millis(500), MAX_WAIT), 1);
        assert_eq!(whole_seconds(Duration::from_secs(3), MAX_WAIT), 3);
        assert_eq!(whole_seconds(Duration::from_secs(60), MAX_WAIT), 20);
        assert_eq!(
            whole_seconds(Duration::from_secs(86_400), MAX_VISIBILITY),
            43_200
        );
    }
}
