//! What a replay does with one message: move it (with its copy), park it, skip it, or report
//! it as one it cannot move.

use mailroom_lambda::sqs::{
    MAX_MESSAGE_ATTRIBUTES, OutgoingAttribute, OutgoingMessage, OutgoingValue,
    SQS_MAX_MESSAGE_BYTES,
};

use super::{DeadLetter, PARKED_ATTRIBUTE, REPLAY_COUNT_ATTRIBUTE, ReplayRequest};

/// What to do with one selected message.
pub(crate) enum Plan {
    Move(OutgoingMessage),
    Park(OutgoingMessage),
    Fail(String),
}

/// The copy to send for one selected message, or why it cannot be sent.
pub(crate) fn plan(
    m: &DeadLetter,
    request: &ReplayRequest,
    fifo: bool,
    rng: &mut fastrand::Rng,
) -> Plan {
    let count = m.replay_count() + 1;
    let parks = m.replay_count() >= request.max_replays;
    let mut out = OutgoingMessage {
        body: m.body.clone(),
        attributes: m.attributes.clone(),
        ..OutgoingMessage::default()
    };
    out.attributes.insert(
        REPLAY_COUNT_ATTRIBUTE.to_owned(),
        OutgoingAttribute {
            data_type: "Number".to_owned(),
            value: OutgoingValue::Text(count.to_string()),
        },
    );
    if parks {
        out.attributes.insert(
            PARKED_ATTRIBUTE.to_owned(),
            OutgoingAttribute::string(format!(
                "replayed {} times, the maximum is {}",
                m.replay_count(),
                request.max_replays
            )),
        );
    }
    if out.attributes.len() > MAX_MESSAGE_ATTRIBUTES {
        return Plan::Fail(format!(
            "{} attributes with the replay count; SQS allows {MAX_MESSAGE_ATTRIBUTES}",
            out.attributes.len()
        ));
    }
    if out.size() > SQS_MAX_MESSAGE_BYTES {
        return Plan::Fail(format!(
            "{} bytes with the replay count; SQS allows {SQS_MAX_MESSAGE_BYTES}",
            out.size()
        ));
    }
    if fifo {
        let Some(group) = &m.group_id else {
            return Plan::Fail("FIFO target, but the message has no MessageGroupId".into());
        };
        out.group_id = Some(group.clone());
        // Fresh for each replay, yet the same if this replay is retried after a crash.
        out.deduplication_id = Some(format!("replay-{count}-{}", m.message_id));
    } else if let Some(policy) = request.backoff {
        let delay = policy.delay(count, rng).as_secs().min(900);
        out.delay_seconds = Some(i32::try_from(delay).unwrap_or(900));
    }
    if parks {
        Plan::Park(out)
    } else {
        Plan::Move(out)
    }
}
