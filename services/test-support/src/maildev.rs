//! Reads what MailDev received, through its JSON API.

use std::time::Duration;

use serde_json::Value;

use crate::stack_var;

/// Waits until a message to `recipient` arrives (up to `limit`), returning MailDev's JSON.
pub async fn wait_for_mail_to(recipient: &str, limit: Duration) -> Option<Value> {
    let base = stack_var("AC_MAILDEV_URL");
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Ok(resp) = client.get(format!("{base}/api/email")).send().await
            && let Ok(Value::Array(mails)) = resp.json::<Value>().await
        {
            let found = mails.into_iter().find(|m| {
                m["to"]
                    .as_array()
                    .is_some_and(|to| to.iter().any(|t| t["address"] == recipient))
            });
            if found.is_some() {
                return found;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every message MailDev holds for `recipient`, oldest first.
pub async fn mails_to(recipient: &str) -> Vec<Value> {
    let base = stack_var("AC_MAILDEV_URL");
    let Ok(resp) = reqwest::Client::new()
        .get(format!("{base}/api/email"))
        .send()
        .await
    else {
        return Vec::new();
    };
    let Ok(Value::Array(mails)) = resp.json::<Value>().await else {
        return Vec::new();
    };
    mails
        .into_iter()
        .filter(|m| {
            m["to"]
                .as_array()
                .is_some_and(|to| to.iter().any(|t| t["address"] == recipient))
        })
        .collect()
}
