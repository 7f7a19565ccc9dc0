//! Loads a Kafka topic with synthetic Tencent CloudAudit messages for `bench/mixed.sh`.
//!
//! Usage: `cargo run --release --example kafka_load -- BOOTSTRAP TOPIC PARTITIONS MESSAGES`
//! Creates the topic, produces MESSAGES messages (deterministic; ~1 KB each, event ids
//! `bench-<i>`) spread over the partitions, waits for every acknowledgement and prints the
//! total payload bytes.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const NAMES: [(&str, &str, &str); 6] = [
    ("cvm.tencentcloudapi.com", "DescribeInstances", "Read"),
    ("cvm.tencentcloudapi.com", "RunInstances", "Write"),
    ("cam.tencentcloudapi.com", "AttachUserPolicy", "Write"),
    ("cos.tencentcloudapi.com", "GetObject", "Read"),
    ("vpc.tencentcloudapi.com", "DescribeSecurityGroups", "Read"),
    ("cls.tencentcloudapi.com", "SearchLog", "Read"),
];
const REGIONS: [&str; 4] = ["ap-guangzhou", "ap-shanghai", "ap-beijing", "ap-singapore"];

fn message(i: usize) -> String {
    let (source, name, kind) = NAMES[i % NAMES.len()];
    let region = REGIONS[(i / 7) % REGIONS.len()];
    let account = 100_000_000_001u64 + (i % 5) as u64;
    let user = 100_000_000_100u64 + (i % 37) as u64;
    let time = 1_714_557_600u64 + (i as u64 / 3);
    serde_json::json!({
        "__SOURCE__": format!("10.0.{}.{}", (i / 250) % 250, i % 250),
        "__TIMESTAMP__": time * 1000,
        "userIdentity": {
            "type": if i.is_multiple_of(4) { "CAMRole" } else { "CAMUser" },
            "principalId": user.to_string(),
            "accountId": account.to_string(),
            "userName": format!("ops-{}", i % 37),
            "sessionContext": {"attributes": {"creationDate": time - 600}}
        },
        "eventTime": time,
        "eventVersion": 1,
        "eventSource": source,
        "eventName": name,
        "eventRegion": region,
        "eventType": "ApiCall",
        "actionType": kind,
        "apiVersion": "2017-03-12",
        "sourceIPAddress": format!("203.0.113.{}", i % 200),
        "userAgent": "TencentCloud-SDK-Python/3.0.1142 Python/3.11.8 Linux/6.5.0",
        "requestID": format!("{:08x}-{:04x}-4000-8000-{:012x}", i * 2_654_435_761 % 0xffff_ffff, i % 0xffff, i),
        "eventID": format!("bench-{i}"),
        "resourceType": "cvm",
        "resourceName": format!("ins-{:08x}", i % 4096),
        "requestParameters": format!("{{\"Limit\":100,\"Offset\":{},\"Filters\":[{{\"Name\":\"zone\",\"Values\":[\"{region}-3\"]}}],\"InstanceIds\":[\"ins-{:08x}\",\"ins-{:08x}\"]}}", i % 1000, i % 4096, (i + 1) % 4096),
        "responseElements": format!("{{\"TotalCount\":{},\"RequestId\":\"req-{i}\"}}", i % 97),
        "errorCode": if i.is_multiple_of(13) { 1 } else { 0 },
        "errorMessage": if i.is_multiple_of(13) { "UnauthorizedOperation: the CAM user has no permission for this action" } else { "" }
    })
    .to_string()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bootstrap, topic, partitions, messages] = args.as_slice() else {
        eprintln!("usage: kafka_load BOOTSTRAP TOPIC PARTITIONS MESSAGES");
        std::process::exit(2);
    };
    let partitions: i32 = partitions.parse().expect("PARTITIONS is a number");
    let messages: usize = messages.parse().expect("MESSAGES is a number");

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let created = futures::executor::block_on(admin.create_topics(
        &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
    ))
    .expect("create topic");
    for r in created {
        r.expect("topic created");
    }

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("batch.num.messages", "5000")
        .set("queue.buffering.max.messages", "200000")
        .create()
        .expect("producer");
    let mut bytes = 0usize;
    for i in 0..messages {
        let payload = message(i);
        bytes += payload.len();
        let mut record = BaseRecord::<(), String>::to(topic)
            .partition(i as i32 % partitions)
            .payload(&payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(20));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(300))
        .expect("every message acknowledged");
    println!("{bytes}");
}
