#!/usr/bin/env python3
"""Deterministic generator of realistic AWS CloudTrail delivery files (benchmark corpus).

Usage: python3 bench/gen_cloudtrail.py --out DIR --events 500000 [--events-per-file 2000] [--seed 1]

Writes DIR/AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/
<account>_CloudTrail_<region>_<YYYYMMDDTHHmmZ>_<random>.json.gz, each one line {"Records":[...]},
and DIR.manifest.json (events, files, bytes) next to DIR so that DIR holds trail files only.
The same arguments give byte-identical output: every file draws from its own seeded RNG and
gzip headers carry no timestamp. Files are generated in parallel, one worker per CPU.
"""
import argparse
import gzip
import json
import os
import random
import re
import string
import sys
import time
import uuid
from itertools import accumulate
from multiprocessing import Pool

START = 1710115200  # 2024-03-11T00:00:00Z; events spread over DAYS days from here
DAYS = 3
ACCOUNTS = [("111122223333", 5), ("012345678901", 3), ("444455556666", 2), ("777788889999", 1), ("210987654321", 1)]
REGIONS = [("us-east-1", 6), ("us-west-2", 2), ("eu-west-1", 2), ("eu-central-1", 1), ("ap-northeast-1", 1)]
UPPER = string.ascii_uppercase + string.digits
ALNUM = string.ascii_letters + string.digits

UA_CLI = [f"aws-cli/2.15.30 md/awscrt#0.19.19 ua/2.0 os/linux#6.5.0-1016-aws md/arch#x86_64 lang/python#3.11.8 "
          f"md/pyimpl#CPython cfg/retry-mode#standard md/installer#exe md/distrib#ubuntu.22 prompt/off command/{c}"
          for c in ("sts.get-caller-identity", "s3.ls", "iam.list-roles")] + [
    f"aws-cli/2.{m}.{p} Python/3.11.{p % 9} {os} prompt/off command/{c}"
    for m, p, os, c in [(13, 2, "Linux/6.2.0-1017-aws exe/x86_64.ubuntu.22", "ec2.describe-instances"),
                        (11, 21, "Darwin/23.1.0 exe/x86_64", "secretsmanager.get-secret-value"),
                        (12, 4, "Windows/10 exe/AMD64", "lambda.list-functions")]] + [
    "aws-cli/1.32.69 md/Botocore#1.34.69 ua/2.0 os/macos#23.4.0 md/arch#arm64 lang/python#3.12.2 md/pyimpl#CPython cfg/retry-mode#legacy botocore/1.34.69"]
UA_SDK = [
    "Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#5.10.210-201.852.amzn2.x86_64 md/arch#x86_64 lang/python#3.11.8 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.69",
    "Boto3/1.26.90 Python/3.9.16 Linux/5.10.167-147.601.amzn2.x86_64 exec-env/AWS_Lambda_python3.9 Botocore/1.29.90",
    "aws-sdk-go/1.44.122 (go1.19.3; linux; amd64)", "aws-sdk-nodejs/2.1540.0 linux/v18.19.0 exec-env/AWS_ECS_FARGATE promise",
    "aws-sdk-go/1.50.38 (go1.21.8; linux; amd64)",
    "aws-sdk-go-v2/1.25.3 os/linux lang/go#1.22.1 md/GOOS#linux md/GOARCH#amd64 api/sts#1.28.4",
    "aws-sdk-java/1.12.681 Linux/5.10.210-201.852.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/17.0.10+7-LTS java/17.0.10 vendor/Amazon.com_Inc. cfg/retry-mode/standard",
    "aws-sdk-java/2.25.11 Linux/6.1.79-99.164.amzn2023.x86_64 OpenJDK_64-Bit_Server_VM/21.0.2+13-LTS Java/21.0.2 vendor/Amazon.com_Inc. io/sync http/Apache cfg/retry-mode/legacy",
    "aws-sdk-js/3.535.0 ua/2.0 os/linux#5.10.210 lang/js md/nodejs#20.11.1 api/s3#3.535.0",
    "aws-sdk-rust/1.1.8 os/linux lang/rust/1.76.0"]
UA_TF = ["APN/1.0 HashiCorp/1.0 Terraform/1.7.5 (+https://www.terraform.io) terraform-provider-aws/5.41.0 "
         "(+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go-v2/1.25.3 os/linux lang/go#1.22.1 "
         "md/GOOS#linux md/GOARCH#amd64 api/ec2#1.150.1"]
UA_CONSOLE = ["AWS Internal", "console.amazonaws.com", "signin.amazonaws.com",
              "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
              "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
              "[S3Console/0.4, aws-internal/3 aws-sdk-java/1.12.488 Linux/5.10.215-181.850.amzn2int.x86_64 OpenJDK_64-Bit_Server_VM/25.372-b08 java/1.8.0_372 vendor/Oracle_Corporation cfg/retry-mode/standard]"]
TLS = [{"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256"},
       {"tlsVersion": "TLSv1.2", "cipherSuite": "ECDHE-RSA-AES128-GCM-SHA256"}]


def rid(r, n, alphabet=UPPER):
    return "".join(r.choices(alphabet, k=n))


def uid(r):
    return str(uuid.UUID(int=r.getrandbits(128), version=4))


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def iam_date(t):  # how IAM and STS format dates in responseElements
    return time.strftime("%b %d, %Y %I:%M:%S %p", time.gmtime(t))


class Account:
    """One AWS account: its principals (each with its usual clients and addresses) and resources."""

    def __init__(self, r, acct):
        self.id = acct
        office = [f"{r.choice([62, 81, 185, 203])}.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}" for _ in range(6)]
        runners = [f"{r.choice([3, 18, 34, 52])}.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}" for _ in range(10)]
        private = [f"10.{r.randrange(8)}.{r.randrange(256)}.{r.randrange(1, 255)}" for _ in range(20)]
        self.vpce = f"vpce-{rid(r, 17, '0123456789abcdef')}"
        self.buckets = [f"{w}-{acct}-{s}" for w in ("logs", "data", "artifacts", "backups", "web")
                        for s in ("prod", "dev")]
        self.instances = [f"i-0{rid(r, 16, '0123456789abcdef')}" for _ in range(40)]
        self.keys = [uid(r) for _ in range(6)]
        self.secrets = [f"{n}-{rid(r, 6, ALNUM)}" for n in ("prod/db/password", "prod/api-key", "dev/db/password",
                                                            "stripe-token", "github-app-key")]
        self.functions = ["orders-handler", "image-resizer", "nightly-report", "slack-notifier", "auth-authorizer"]
        self.roles = {n: f"AROA{rid(r, 17)}" for n in (
            "OrganizationAccountAccessRole", "ec2-app-role", "lambda-orders-role", "github-actions-deploy",
            "terraform", "datadog-integration", "AWSReservedSSO_AdministratorAccess_5d1e2f3a4b6c7d8e",
            "AWSReservedSSO_ReadOnlyAccess_0a9b8c7d6e5f4a3b")}
        self.trails = ["management-events", "org-trail"]
        self.humans, weights = [], []

        def add(weight, identity, uas, ips):
            self.humans.append((identity, uas, ips))
            weights.append(weight)

        for name in ("alice", "bob", "carol", "deploy-bot", "ci-runner", "backup-svc", "legacy-app", "mallory"):
            pid = f"AIDA{rid(r, 17)}"
            for _ in range(2):  # two access keys per user
                add(4, {"type": "IAMUser", "principalId": pid, "arn": f"arn:aws:iam::{acct}:user/{name}",
                        "accountId": acct, "accessKeyId": f"AKIA{rid(r, 16)}", "userName": name},
                    UA_CLI + UA_SDK if "-" in name else UA_CLI, runners if "-" in name else office)
        sessions = [("AWSReservedSSO_AdministratorAccess_5d1e2f3a4b6c7d8e", f"{u}@example.com", True) for u in ("alice", "dave", "erin")]
        sessions += [("AWSReservedSSO_ReadOnlyAccess_0a9b8c7d6e5f4a3b", f"{u}@example.com", True) for u in ("frank", "grace")]
        sessions += [("ec2-app-role", i, False) for i in self.instances[:12]]
        sessions += [("lambda-orders-role", "orders-handler", False), ("github-actions-deploy", "GitHubActions", False),
                     ("terraform", "terraform-run-8812", False), ("datadog-integration", "DatadogAWSIntegration", False),
                     ("OrganizationAccountAccessRole", "botocore-session-1710115200", False)]
        for role, session, human in sessions:
            for _ in range(3):  # several sessions of each, created at different times
                created = START - r.randrange(3600) + r.randrange(DAYS * 86400)
                console = human and r.random() < 0.7
                attrs = {"creationDate": iso(created) if r.random() < 0.97 else time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(created)),
                         "mfaAuthenticated": "true" if human and r.random() < 0.8 else "false"}
                ctx = {"sessionIssuer": {"type": "Role", "principalId": self.roles[role], "arn": f"arn:aws:iam::{acct}:role/{role}",
                                         "accountId": acct, "userName": role}, "webIdFederationData": {}, "attributes": attrs}
                if session.startswith("i-"):
                    ctx["ec2RoleDelivery"] = "2.0"
                identity = {"type": "AssumedRole", "principalId": f"{self.roles[role]}:{session}",
                            "arn": f"arn:aws:sts::{acct}:assumed-role/{role}/{session}", "accountId": acct,
                            "accessKeyId": f"ASIA{rid(r, 16)}", "sessionContext": ctx}
                uas = UA_CONSOLE if console else UA_TF if role == "terraform" else UA_CLI if human else UA_SDK
                add(6 if human else 5, identity, uas, office if human else private if session.startswith("i-") else runners)
        for name in ("partner-portal", "reporting"):
            add(6, {"type": "FederatedUser", "principalId": f"{acct}:{name}", "arn": f"arn:aws:sts::{acct}:federated-user/{name}",
                    "accountId": acct, "accessKeyId": f"ASIA{rid(r, 16)}",
                    "sessionContext": {"sessionIssuer": {"type": "IAMUser", "principalId": f"AIDA{rid(r, 17)}",
                                                         "arn": f"arn:aws:iam::{acct}:user/federation-broker",
                                                         "accountId": acct, "userName": "federation-broker"},
                                       "attributes": {"creationDate": iso(START + r.randrange(86400)), "mfaAuthenticated": "false"}}},
                UA_SDK, runners)
        self.root = {"type": "Root", "principalId": acct, "arn": f"arn:aws:iam::{acct}:root", "accountId": acct,
                     "accessKeyId": f"ASIA{rid(r, 16)}", "sessionContext": {"sessionIssuer": {}, "webIdFederationData": {},
                     "attributes": {"creationDate": iso(START + r.randrange(86400)), "mfaAuthenticated": "true"}}}
        add(4, self.root, UA_CONSOLE, office)
        store = f"arn:aws:identitystore::{acct}:identitystore/d-{rid(r, 10, '0123456789abcdef')}"
        self.sso_users = [({"type": "IdentityCenterUser", "accountId": acct,
                            "onBehalfOf": {"userId": uid(r), "identityStoreArn": store}, "credentialId": rid(r, 52, ALNUM + "_-")},
                           UA_CONSOLE[3:5], office) for _ in range(4)]
        self.console_users = [(h[0], UA_CONSOLE[3:5], office) for h in self.humans if h[1] is UA_CLI] + [(self.root, UA_CONSOLE[3:5], office)]
        self.cum_weights = list(accumulate(weights))

    def human(self, r):
        return r.choices(self.humans, cum_weights=self.cum_weights)[0]


def deny(who, action, res):
    arn = who.get("arn", "anonymous")
    return f"User: {arn} is not authorized to perform: {action} on resource: {res} because no identity-based policy allows the {action} action"


# Operations: (eventSource, eventName, weight, readOnly, who, build). build(r, a, region, t) returns the
# fields that vary per operation; who is "human", "service:<invoker,...>" or "mixed:<invoker,...>".
def policy_doc(r):
    n = r.choice([1, 1, 2, 3]) if r.random() < 0.97 else r.randrange(90, 160)  # a few exceed 32 KB
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": f"Stmt{i}", "Effect": "Allow", "Action": r.sample(["s3:GetObject", "s3:PutObject", "s3:ListBucket", "kms:Decrypt",
                                                                     "sqs:SendMessage", "dynamodb:Query", "logs:PutLogEvents"], 3),
         "Resource": [f"arn:aws:s3:::bucket-{r.randrange(10**6)}/*", f"arn:aws:dynamodb:us-east-1:*:table/t{i}"],
         "Condition": {"StringEquals": {"aws:PrincipalTag/team": r.choice(["data", "web", "infra"])}}} for i in range(n)]}, indent=4)


def ec2_run(r, a, reg, t):
    n = r.choice([1, 1, 1, 2, 3]) if r.random() < 0.98 else r.randrange(10, 40)
    ami, itype = f"ami-0{rid(r, 16, '0123456789abcdef')}", r.choice(["t3.micro", "m6i.large", "c7g.xlarge"])
    tags = {"items": [{"resourceType": "instance", "tags": [{"key": "Name", "value": f"web-{r.randrange(100)}"},
                                                           {"key": "team", "value": "web"}]}]}
    inst = [{"instanceId": f"i-0{rid(r, 16, '0123456789abcdef')}", "imageId": ami, "currentInstanceBootMode": "uefi",
             "instanceState": {"code": 0, "name": "pending"}, "privateDnsName": f"ip-10-0-{r.randrange(256)}-{r.randrange(256)}.ec2.internal",
             "amiLaunchIndex": k, "productCodes": None, "instanceType": itype, "launchTime": t * 1000,
             "placement": {"availabilityZone": f"{reg}a", "tenancy": "default"}, "monitoring": {"state": "disabled"},
             "subnetId": "subnet-0a1b2c3d4e5f60718", "vpcId": "vpc-0f1e2d3c4b5a69788", "privateIpAddress": f"10.0.{r.randrange(256)}.{r.randrange(256)}",
             "stateReason": {"code": "pending", "message": "pending"}, "architecture": "x86_64", "rootDeviceType": "ebs",
             "rootDeviceName": "/dev/xvda", "blockDeviceMapping": {}, "virtualizationType": "hvm", "hypervisor": "xen",
             "tagSet": tags["items"][0]["tags"], "groupSet": {"items": [{"groupId": "sg-0123456789abcdef0", "groupName": "web"}]},
             "sourceDestCheck": True, "networkInterfaceSet": {"items": [{"networkInterfaceId": f"eni-0{rid(r, 16, '0123456789abcdef')}",
                                                                          "status": "in-use", "macAddress": "0e:11:22:33:44:55"}]},
             "ebsOptimized": False, "enaSupport": True, "cpuOptions": {"coreCount": 1, "threadsPerCore": 2},
             "metadataOptions": {"state": "pending", "httpTokens": "required", "httpPutResponseHopLimit": 2, "httpEndpoint": "enabled"}}
            for k in range(n)]
    return {"requestParameters": {"instancesSet": {"items": [{"imageId": ami, "minCount": n, "maxCount": n}]}, "instanceType": itype,
                                  "blockDeviceMapping": {}, "monitoring": {"enabled": False}, "disableApiTermination": False,
                                  "disableApiStop": False, "clientToken": uid(r), "tagSpecificationSet": tags,
                                  "userData": "<sensitiveDataRemoved>", "metadataOptions": {"httpTokens": "required"}},
            "responseElements": {"requestId": uid(r), "reservationId": f"r-0{rid(r, 16, '0123456789abcdef')}",
                                 "ownerId": a.id, "groupSet": {}, "instancesSet": {"items": inst}}}


def instances_set(r, a, state=None):
    ids = r.sample(a.instances, r.choice([1, 1, 2, 3]))
    req = {"instancesSet": {"items": [{"instanceId": i} for i in ids]}}
    if state is None:
        return {"requestParameters": req}
    return {"requestParameters": req, "responseElements": {"requestId": uid(r), "instancesSet": {"items": [
        {"instanceId": i, "currentState": {"code": state[0], "name": state[1]}, "previousState": {"code": 16, "name": "running"}}
        for i in ids]}}}


def s3_bucket(r, a, reg, extra=None, resp=None):
    b = r.choice(a.buckets)
    req = {"bucketName": b, "Host": f"{b}.s3.{reg}.amazonaws.com", **(extra or {})}
    return {"requestParameters": req, "responseElements": resp, "requestID": rid(r, 16, "0123456789ABCDEF"),
            "additionalEventData": {"SignatureVersion": "SigV4", "CipherSuite": "TLS_AES_128_GCM_SHA256", "bytesTransferredIn": 0,
                                    "AuthenticationMethod": "AuthHeader", "x-amz-id-2": rid(r, 76, ALNUM + "+/"), "bytesTransferredOut": 0},
            "resources": [{"accountId": a.id, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{b}"}]}


def s3_object(r, a, reg, t, put):
    d = s3_bucket(r, a, reg)
    key = f"{r.choice(['raw', 'exports', 'tmp', 'images'])}/{time.strftime('%Y/%m/%d', time.gmtime(t))}/{uid(r)}.{r.choice(['json.gz', 'csv', 'png'])}"
    d["requestParameters"]["key"] = key
    d["additionalEventData"]["bytesTransferredIn" if put else "bytesTransferredOut"] = r.randrange(100, 10**7)
    d["resources"].insert(0, {"type": "AWS::S3::Object", "ARN": f"{d['resources'][0]['ARN']}/{key}"})
    d["responseElements"] = {"x-amz-server-side-encryption": "aws:kms", "x-amz-version-id": rid(r, 32, ALNUM)} if put else None
    d.update(eventCategory="Data", managementEvent=False)
    return d


def kms_key(r, a, reg, req=None, resp=None):
    k = f"arn:aws:kms:{reg}:{a.id}:key/{r.choice(a.keys)}"
    return {"requestParameters": {"keyId": k, **(req or {})}, "responseElements": resp,
            "resources": [{"accountId": a.id, "type": "AWS::KMS::Key", "ARN": k}]}


def enc_ctx(r, a, reg):
    return r.choice([{"aws:s3:arn": f"arn:aws:s3:::{r.choice(a.buckets)}"},
                     {"SecretARN": f"arn:aws:secretsmanager:{reg}:{a.id}:secret:{r.choice(a.secrets)}", "SecretVersionId": uid(r)},
                     {"aws:lambda:FunctionArn": f"arn:aws:lambda:{reg}:{a.id}:function:{r.choice(a.functions)}"},
                     {"aws:ebs:id": f"vol-0{rid(r, 16, '0123456789abcdef')}"}])


def secret(r, a, reg, extra=None, resp=None):
    s = f"arn:aws:secretsmanager:{reg}:{a.id}:secret:{r.choice(a.secrets)}"
    return {"requestParameters": {"secretId": s, **(extra or {})}, "responseElements": resp}


def function(r, a, extra=None):
    return {"requestParameters": {"functionName": r.choice(a.functions), **(extra or {})}, "apiVersion": "2015-03-31"}


def lambda_create(r, a, reg, t):
    f = f"{r.choice(a.functions)}-{r.randrange(100)}"
    arn = f"arn:aws:lambda:{reg}:{a.id}:function:{f}"
    cfg = {"functionName": f, "runtime": r.choice(["python3.12", "nodejs20.x", "java21"]), "role": f"arn:aws:iam::{a.id}:role/lambda-orders-role",
           "handler": "app.handler", "timeout": 30, "memorySize": 512, "environment": {}, "tracingConfig": {"mode": "PassThrough"},
           "architectures": ["arm64"], "ephemeralStorage": {"size": 512}, "loggingConfig": {"logFormat": "Text", "logGroup": f"/aws/lambda/{f}"}}
    return {"requestParameters": {**cfg, "code": {}, "publish": False, "tags": {"team": "orders"}},
            "responseElements": {**cfg, "functionArn": arn, "codeSize": r.randrange(10**3, 5 * 10**7), "codeSha256": rid(r, 43, ALNUM + "+/") + "=",
                                 "version": "$LATEST", "lastModified": time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime(t)),
                                 "state": "Pending", "stateReason": "The function is being created.", "stateReasonCode": "Creating",
                                 "packageType": "Zip", "snapStart": {"applyOn": "None", "optimizationStatus": "Off"},
                                 "runtimeVersionConfig": {"runtimeVersionArn": f"arn:aws:lambda:{reg}::runtime:{rid(r, 64, '0123456789abcdef')}"}},
            "apiVersion": "2015-03-31"}


def assume_role(r, a, reg, t):
    role = r.choice(list(a.roles))
    arn, session = f"arn:aws:iam::{a.id}:role/{role}", r.choice(["botocore-session-1710115200", "aws-go-sdk-1710120000", "GitHubActions", f"i-0{rid(r, 16, '0123456789abcdef')}"])
    return {"requestParameters": {"roleArn": arn, "roleSessionName": session, "durationSeconds": 3600},
            "responseElements": {"credentials": {"accessKeyId": f"ASIA{rid(r, 16)}", "sessionToken": rid(r, r.randrange(150, 300), ALNUM + "/+="),
                                                 "expiration": iam_date(t + 3600)},
                                 "assumedRoleUser": {"assumedRoleId": f"{a.roles[role]}:{session}", "arn": f"arn:aws:sts::{a.id}:assumed-role/{role}/{session}"}},
            "resources": [{"accountId": a.id, "type": "AWS::IAM::Role", "ARN": arn}], **({"sharedEventID": uid(r)} if r.random() < 0.3 else {})}


def iam_user_resp(r, a, t, name):
    return {"user": {"path": "/", "userName": name, "userId": f"AIDA{rid(r, 17)}", "arn": f"arn:aws:iam::{a.id}:user/{name}", "createDate": iam_date(t)}}


def lookup(r, a, reg, t):
    attr = r.choice([[], [{"attributeKey": "EventName", "attributeValue": r.choice(["ConsoleLogin", "DeleteTrail", "RunInstances"])}],
                     [{"attributeKey": "Username", "attributeValue": "alice"}]])
    return {"requestParameters": {"startTime": iam_date(t - 86400), "endTime": iam_date(t), "lookupAttributes": attr, "maxResults": 50}}


OPS = [
    ("ec2", "DescribeInstances", 8, True, "human", lambda r, a, reg, t: {"requestParameters": {"instancesSet": {}, "filterSet": r.choice([{}, {"items": [{"name": "instance-state-name", "valueSet": {"items": [{"value": "running"}]}}]}])}}),
    ("ec2", "DescribeSecurityGroups", 3, True, "human", lambda r, a, reg, t: {"requestParameters": {"securityGroupSet": {}, "securityGroupIdSet": {}, "filterSet": {}}}),
    ("ec2", "DescribeVolumes", 2, True, "mixed:autoscaling.amazonaws.com", lambda r, a, reg, t: {"requestParameters": {"volumeSet": {}, "filterSet": {}, "maxResults": 500}}),
    ("ec2", "DescribeInstanceStatus", 3, True, "mixed:autoscaling.amazonaws.com,ssm.amazonaws.com", lambda r, a, reg, t: {"requestParameters": {"instancesSet": {}, "filterSet": {}, "includeAllInstances": r.random() < 0.5}}),
    ("ec2", "RunInstances", 0.6, False, "human", ec2_run),
    ("ec2", "StopInstances", 0.3, False, "human", lambda r, a, reg, t: instances_set(r, a, (64, "stopping"))),
    ("ec2", "TerminateInstances", 0.3, False, "mixed:autoscaling.amazonaws.com", lambda r, a, reg, t: instances_set(r, a, (32, "shutting-down"))),
    ("ec2", "CreateTags", 1, False, "human", lambda r, a, reg, t: {"requestParameters": {"resourcesSet": {"items": [{"resourceId": r.choice(a.instances)}]}, "tagSet": {"items": [{"key": "owner", "value": r.choice(["alice", "bob", "web"])}, {"key": "env", "value": r.choice(["prod", "dev"])}]}}, "responseElements": {"requestId": uid(r), "_return": True}}),
    ("ec2", "AuthorizeSecurityGroupIngress", 0.3, False, "human", lambda r, a, reg, t: {"requestParameters": {"groupId": "sg-0123456789abcdef0", "ipPermissions": {"items": [{"ipProtocol": "tcp", "fromPort": p, "toPort": p, "groups": {}, "ipRanges": {"items": [{"cidrIp": r.choice(["0.0.0.0/0", "10.0.0.0/8"])}]}, "ipv6Ranges": {}, "prefixListIds": {}} for p in r.sample([22, 80, 443, 3389, 5432], 2)]}}, "responseElements": {"requestId": uid(r), "_return": True, "securityGroupRuleSet": {"items": [{"groupOwnerId": a.id, "isEgress": False, "ipProtocol": "tcp", "securityGroupRuleId": f"sgr-0{rid(r, 16, '0123456789abcdef')}"}]}}}),
    ("ec2", "ModifySnapshotAttribute", 0.1, False, "human", lambda r, a, reg, t: {"requestParameters": {"snapshotId": f"snap-0{rid(r, 16, '0123456789abcdef')}", "attributeType": "CREATE_VOLUME_PERMISSION", "createVolumePermission": {"add": {"items": [{"userId": "999988887777"}]}}}, "responseElements": {"requestId": uid(r), "_return": True}}),
    ("s3", "ListBuckets", 2, True, "human", lambda r, a, reg, t: {"requestParameters": {"Host": f"s3.{reg}.amazonaws.com"}}),
    ("s3", "GetBucketAcl", 3, True, "mixed:config.amazonaws.com,access-analyzer.amazonaws.com", lambda r, a, reg, t: s3_bucket(r, a, reg, {"acl": ""})),
    ("s3", "GetBucketLocation", 3, True, "human", lambda r, a, reg, t: s3_bucket(r, a, reg, {"location": ""})),
    ("s3", "GetBucketPolicy", 2, True, "mixed:config.amazonaws.com", lambda r, a, reg, t: s3_bucket(r, a, reg, {"policy": ""})),
    ("s3", "PutBucketPolicy", 0.2, False, "human", lambda r, a, reg, t: s3_bucket(r, a, reg, {"policy": "", "bucketPolicy": json.loads(policy_doc(r))})),
    ("s3", "PutBucketPublicAccessBlock", 0.1, False, "human", lambda r, a, reg, t: s3_bucket(r, a, reg, {"publicAccessBlock": "", "PublicAccessBlockConfiguration": {"xmlns": "http://s3.amazonaws.com/doc/2006-03-01/", "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": r.random() < 0.8, "RestrictPublicBuckets": True}})),
    ("s3", "GetObject", 3, True, "human", lambda r, a, reg, t: s3_object(r, a, reg, t, False)),
    ("s3", "PutObject", 1.5, False, "human", lambda r, a, reg, t: s3_object(r, a, reg, t, True)),
    ("sts", "AssumeRole", 6, True, "mixed:lambda.amazonaws.com,ec2.amazonaws.com,ecs-tasks.amazonaws.com,config.amazonaws.com", assume_role),
    ("sts", "GetCallerIdentity", 4, True, "human", lambda r, a, reg, t: {}),
    ("sts", "AssumeRoleWithWebIdentity", 0.5, True, "human", lambda r, a, reg, t: {**assume_role(r, a, reg, t), "additionalEventData": {"identityProviderConnectionVerificationMethod": "IAMTrustStore"}}),
    ("sts", "GetSessionToken", 0.2, True, "human", lambda r, a, reg, t: {"requestParameters": {"durationSeconds": 43200}, "responseElements": {"credentials": {"accessKeyId": f"ASIA{rid(r, 16)}", "sessionToken": rid(r, 400, ALNUM), "expiration": iam_date(t + 43200)}}}),
    ("iam", "GetRole", 2, True, "mixed:access-analyzer.amazonaws.com,config.amazonaws.com", lambda r, a, reg, t: {"requestParameters": {"roleName": r.choice(list(a.roles))}}),
    ("iam", "ListRoles", 1, True, "human", lambda r, a, reg, t: {"requestParameters": r.choice([None, {"maxItems": 100}, {"marker": rid(r, 120, ALNUM)}])}),
    ("iam", "GetUser", 1, True, "human", lambda r, a, reg, t: {"requestParameters": r.choice([None, {"userName": r.choice(["alice", "bob", "mallory"])}])}),
    ("iam", "ListAttachedRolePolicies", 1, True, "mixed:config.amazonaws.com", lambda r, a, reg, t: {"requestParameters": {"roleName": r.choice(list(a.roles))}}),
    ("iam", "GetAccountAuthorizationDetails", 0.1, True, "human", lambda r, a, reg, t: {"requestParameters": {"filter": ["User", "Role", "Group", "LocalManagedPolicy", "AWSManagedPolicy"]}}),
    ("iam", "CreateUser", 0.1, False, "human", lambda r, a, reg, t: (lambda n: {"requestParameters": {"userName": n, "tags": [{"key": "created-by", "value": "terraform"}]}, "responseElements": iam_user_resp(r, a, t, n)})(f"svc-{r.randrange(1000)}")),
    ("iam", "CreateAccessKey", 0.1, False, "human", lambda r, a, reg, t: {"requestParameters": {"userName": "deploy-bot"}, "responseElements": {"accessKey": {"userName": "deploy-bot", "accessKeyId": f"AKIA{rid(r, 16)}", "status": "Active", "createDate": iam_date(t)}}}),
    ("iam", "AttachRolePolicy", 0.2, False, "human", lambda r, a, reg, t: {"requestParameters": {"roleName": r.choice(list(a.roles)), "policyArn": r.choice(["arn:aws:iam::aws:policy/AdministratorAccess", "arn:aws:iam::aws:policy/ReadOnlyAccess", f"arn:aws:iam::{a.id}:policy/app-access"])}}),
    ("iam", "PutRolePolicy", 0.3, False, "human", lambda r, a, reg, t: {"requestParameters": {"roleName": r.choice(list(a.roles)), "policyName": "inline-access", "policyDocument": policy_doc(r)}}),
    ("iam", "DeleteUser", 0.05, False, "human", lambda r, a, reg, t: {"requestParameters": {"userName": f"svc-{r.randrange(1000)}"}}),
    ("kms", "Decrypt", 12, True, "mixed:secretsmanager.amazonaws.com,s3.amazonaws.com,lambda.amazonaws.com,ebs.amazonaws.com", lambda r, a, reg, t: kms_key(r, a, reg, {"encryptionContext": enc_ctx(r, a, reg), "encryptionAlgorithm": "SYMMETRIC_DEFAULT"})),
    ("kms", "GenerateDataKey", 6, True, "mixed:s3.amazonaws.com,secretsmanager.amazonaws.com", lambda r, a, reg, t: kms_key(r, a, reg, {"encryptionContext": enc_ctx(r, a, reg), "keySpec": "AES_256"})),
    ("kms", "DescribeKey", 2, True, "human", lambda r, a, reg, t: kms_key(r, a, reg)),
    ("kms", "ListAliases", 1, True, "human", lambda r, a, reg, t: {"requestParameters": r.choice([None, {"limit": 100}])}),
    ("kms", "CreateKey", 0.05, False, "human", lambda r, a, reg, t: (lambda k: {"requestParameters": {"description": "app data key", "keyUsage": "ENCRYPT_DECRYPT", "keySpec": "SYMMETRIC_DEFAULT", "origin": "AWS_KMS", "bypassPolicyLockoutSafetyCheck": False, "tags": [], "multiRegion": False}, "responseElements": {"keyMetadata": {"aWSAccountId": a.id, "keyId": k, "arn": f"arn:aws:kms:{reg}:{a.id}:key/{k}", "creationDate": iam_date(t), "enabled": True, "description": "app data key", "keyUsage": "ENCRYPT_DECRYPT", "keyState": "Enabled", "origin": "AWS_KMS", "keyManager": "CUSTOMER", "customerMasterKeySpec": "SYMMETRIC_DEFAULT", "keySpec": "SYMMETRIC_DEFAULT", "encryptionAlgorithms": ["SYMMETRIC_DEFAULT"], "multiRegion": False}}})(uid(r))),
    ("kms", "ScheduleKeyDeletion", 0.03, False, "human", lambda r, a, reg, t: kms_key(r, a, reg, {"pendingWindowInDays": 7}, {"keyState": "PendingDeletion", "deletionDate": iam_date(t + 7 * 86400)})),
    ("kms", "RotateKey", 0.1, False, "event:kms.amazonaws.com", lambda r, a, reg, t: {**kms_key(r, a, reg), "requestParameters": None, "serviceEventDetails": {"keyId": r.choice(a.keys)}}),
    ("secretsmanager", "GetSecretValue", 5, True, "human", lambda r, a, reg, t: secret(r, a, reg, r.choice([{}, {"versionStage": "AWSCURRENT"}]))),
    ("secretsmanager", "DescribeSecret", 1, True, "mixed:secretsmanager.amazonaws.com", lambda r, a, reg, t: secret(r, a, reg)),
    ("secretsmanager", "ListSecrets", 1, True, "human", lambda r, a, reg, t: {"requestParameters": r.choice([None, {"maxResults": 100}, {"filters": [{"key": "name", "values": ["prod/"]}]}])}),
    ("secretsmanager", "PutSecretValue", 0.2, False, "human", lambda r, a, reg, t: secret(r, a, reg, {"clientRequestToken": uid(r)}, {"aRN": f"arn:aws:secretsmanager:{reg}:{a.id}:secret:{r.choice(a.secrets)}", "versionId": uid(r), "versionStages": ["AWSCURRENT"]})),
    ("secretsmanager", "DeleteSecret", 0.03, False, "human", lambda r, a, reg, t: secret(r, a, reg, {"recoveryWindowInDays": 30, "forceDeleteWithoutRecovery": False})),
    ("secretsmanager", "RotationSucceeded", 0.1, False, "event:secretsmanager.amazonaws.com", lambda r, a, reg, t: {"serviceEventDetails": {"versionId": uid(r)}, "additionalEventData": {"SecretId": f"arn:aws:secretsmanager:{reg}:{a.id}:secret:{r.choice(a.secrets)}"}}),
    ("lambda", "ListFunctions20150331", 1, True, "human", lambda r, a, reg, t: {"requestParameters": None, "apiVersion": "2015-03-31"}),
    ("lambda", "GetFunction20150331v2", 1, True, "human", lambda r, a, reg, t: function(r, a)),
    ("lambda", "CreateFunction20150331", 0.1, False, "human", lambda_create),
    ("lambda", "UpdateFunctionCode20150331v2", 0.2, False, "human", lambda r, a, reg, t: function(r, a, {"publish": False, "dryRun": False, "s3Bucket": r.choice(a.buckets), "s3Key": f"builds/{uid(r)}.zip"})),
    ("lambda", "AddPermission20150331v2", 0.05, False, "human", lambda r, a, reg, t: {"requestParameters": {"functionName": r.choice(a.functions), "statementId": uid(r), "action": "lambda:InvokeFunction", "principal": r.choice(["s3.amazonaws.com", "*", "events.amazonaws.com"])}, "responseElements": {"statement": json.dumps({"Sid": "x", "Effect": "Allow", "Principal": "*", "Action": "lambda:InvokeFunction"})}, "apiVersion": "2015-03-31"}),
    ("lambda", "DeleteFunction20150331", 0.03, False, "human", lambda r, a, reg, t: function(r, a)),
    ("cloudtrail", "DescribeTrails", 1, True, "mixed:config.amazonaws.com", lambda r, a, reg, t: {"requestParameters": {"trailNameList": [], "includeShadowTrails": True}}),
    ("cloudtrail", "GetTrailStatus", 1, True, "human", lambda r, a, reg, t: {"requestParameters": {"name": f"arn:aws:cloudtrail:us-east-1:{a.id}:trail/{r.choice(a.trails)}"}}),
    ("cloudtrail", "LookupEvents", 1, True, "human", lookup),
    ("cloudtrail", "PutEventSelectors", 0.03, False, "human", lambda r, a, reg, t: {"requestParameters": {"trailName": r.choice(a.trails), "eventSelectors": [{"readWriteType": "All", "includeManagementEvents": True, "dataResources": [{"type": "AWS::S3::Object", "values": ["arn:aws:s3"]}, {"type": "AWS::Lambda::Function", "values": ["arn:aws:lambda"]}], "excludeManagementEventSources": []}]}}),
    ("cloudtrail", "StopLogging", 0.01, False, "human", lambda r, a, reg, t: {"requestParameters": {"name": r.choice(a.trails)}}),
    ("cloudtrail", "DeleteTrail", 0.01, False, "human", lambda r, a, reg, t: {"requestParameters": {"name": r.choice(a.trails)}}),
    ("signin", "ConsoleLogin", 0.6, False, "console", None),
    ("sso", "ListAccounts", 0.3, True, "sso", lambda r, a, reg, t: {"requestParameters": {"maxResults": 100}}),
    ("sso", "GetRoleCredentials", 0.3, True, "sso", lambda r, a, reg, t: {"requestParameters": {"accountId": a.id, "roleName": "AdministratorAccess"}}),
]
GLOBAL = {"iam", "signin"}  # logged in us-east-1 only
ERRORS = {  # (errorCode, errorMessage template: {who} and {action} are filled in)
    "ec2": [("Client.UnauthorizedOperation", "You are not authorized to perform this operation. User: {who} is not authorized to perform: {action} because no identity-based policy allows the {action} action. Encoded authorization failure message: {blob}"),
            ("Client.InvalidInstanceID.NotFound", "The instance ID 'i-0123456789abcdef0' does not exist"), ("Client.RequestLimitExceeded", "Request limit exceeded.")],
    "s3": [("AccessDenied", "Access Denied"), ("NoSuchBucketPolicy", "The bucket policy does not exist")],
    "iam": [("AccessDenied", None), ("NoSuchEntityException", "The role with name app-legacy cannot be found."), ("NoSuchEntity", "The user with name ghost cannot be found."), ("Throttling", "Rate exceeded")],
    "sts": [("AccessDenied", None), ("ExpiredTokenException", "The security token included in the request is expired")],
    "kms": [("AccessDenied", None), ("ThrottlingException", "Rate exceeded"), ("NotFoundException", "Key 'arn:aws:kms:us-east-1:111122223333:key/00000000-0000-4000-8000-000000000000' does not exist")],
    "secretsmanager": [("AccessDenied", None), ("ResourceNotFoundException", "Secrets Manager can't find the specified secret.")],
    "lambda": [("AccessDenied", None), ("ResourceNotFoundException", "Function not found: arn:aws:lambda:us-east-1:111122223333:function:old-handler"), ("ThrottlingException", "Rate exceeded")],
    "cloudtrail": [("AccessDenied", None), ("ThrottlingException", "Rate exceeded"), ("TrailNotFoundException", "Unknown trail: old-trail for the user: 111122223333")],
    "sso": [("UnauthorizedException", "Session token not found or invalid")],
}


def event(r, a, reg, t, op):
    svc, name, _, read_only, who, build = op
    source = f"{svc}.amazonaws.com"
    kind, _, invokers = who.partition(":")
    if kind == "mixed":
        kind = "service" if r.random() < 0.7 else "human"
    ext = {}
    if kind == "console":
        identity, uas, ips = r.choice(a.console_users)
        ok = r.random() < 0.9
        ext = {"responseElements": {"ConsoleLogin": "Success" if ok else "Failure"},
               "additionalEventData": {"LoginTo": "https://console.aws.amazon.com/console/home?state=hashArgs%23&isauthcode=true",
                                       "MobileVersion": "No", "MFAUsed": "Yes" if identity["type"] == "Root" or r.random() < 0.6 else "No"}}
        identity = {k: v for k, v in identity.items() if k not in ("accessKeyId", "sessionContext")}
        if not ok:
            ext["errorMessage"] = "Failed authentication"
    elif kind in ("service", "event"):
        inv = r.choice(invokers.split(","))
        identity = {"type": "AWSService", "invokedBy": inv} if kind == "service" else {"accountId": a.id, "invokedBy": inv}
        uas, ips = [inv], [inv if r.random() < 0.9 else "AWS Internal"]
    elif kind == "sso":
        identity, uas, ips = r.choice(a.sso_users)
    else:
        identity, uas, ips = a.human(r)
    ua = r.choice(uas)
    ip = ua if ua == "AWS Internal" else r.choice(ips)
    ev = {"eventVersion": "1.09" if r.random() < 0.7 else "1.08", "userIdentity": identity, "eventTime": iso(t),
          "eventSource": source, "eventName": name, "awsRegion": reg, "sourceIPAddress": ip, "userAgent": ua}
    errs = ERRORS.get(svc)
    if errs and kind != "event" and r.random() < 0.085:
        code, msg = r.choice(errs)
        action = f"{svc}:{re.sub(r'20[0-9]{6}(v[0-9])?$', '', name)}"
        msg = (msg or deny(identity, action, f"arn:aws:{svc}:{reg}:{a.id}:*")).format(
            who=identity.get("arn", "anonymous"), action=action, blob=rid(r, r.randrange(200, 600), ALNUM + "-_"))
        ev["errorCode"], ev["errorMessage"] = code, msg
    ev["requestParameters"] = ev["responseElements"] = None
    ev["requestID"] = uid(r) if kind != "event" else None
    ev["eventID"] = uid(r)
    ev["readOnly"] = read_only
    ev["eventType"] = {"console": "AwsConsoleSignIn", "event": "AwsServiceEvent"}.get(kind, "AwsApiCall")
    ev["managementEvent"] = True
    ev["recipientAccountId"] = a.id
    ev["eventCategory"] = "Management"
    if build:
        ext.update(build(r, a, reg, t))
    if "errorCode" in ev:
        ext["responseElements"] = None
    ev.update(ext)
    if ev["requestID"] is None:
        del ev["requestID"]
    if kind in ("human", "sso") and ip != "AWS Internal":
        if ip.startswith("10.") and svc in ("s3", "kms", "secretsmanager", "sts"):
            ev["vpcEndpointId"] = a.vpce
        host = "iam.amazonaws.com" if svc == "iam" else f"{svc}.{reg}.amazonaws.com"
        ev["tlsDetails"] = {**r.choice(TLS), "clientProvidedHostHeader": host}
    if kind == "human" and uas is UA_CONSOLE:
        ev["sessionCredentialFromConsole"] = "true"
    return ev


def write_file(job):
    """Generates one delivery file; returns (records, uncompressed bytes, compressed bytes)."""
    out, seed, index, acct, reg, delivered, count = job
    r = random.Random(f"{seed}/{index}")
    a = ACCOUNT_OBJS[acct]
    ops = [op for op in OPS if reg == "us-east-1" or op[0] not in GLOBAL]
    weights = [op[2] for op in ops]
    records = []
    for op in r.choices(ops, weights, k=count):
        late = r.random() < 0.03  # late data: hours older than the delivery
        t = delivered - (r.randrange(900, 6 * 3600) if late else r.randrange(15, 900))
        records.append(event(r, a, reg, t, op))
    data = json.dumps({"Records": records}, separators=(",", ":")).encode()
    stamp = time.gmtime(delivered)
    path = os.path.join(out, "AWSLogs", acct, "CloudTrail", reg, time.strftime("%Y/%m/%d", stamp),
                        f"{acct}_CloudTrail_{reg}_{time.strftime('%Y%m%dT%H%MZ', stamp)}_{rid(r, 16, ALNUM)}.json.gz")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    packed = gzip.compress(data, compresslevel=6, mtime=0)
    with open(path, "wb") as f:
        f.write(packed)
    return count, len(data), len(packed)


def build_accounts(seed):
    r = random.Random(f"{seed}/accounts")
    return {acct: Account(r, acct) for acct, _ in ACCOUNTS}


def init_worker(seed):
    global ACCOUNT_OBJS
    ACCOUNT_OBJS = build_accounts(seed)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="corpus directory (must be empty or absent)")
    p.add_argument("--events", type=int, required=True)
    p.add_argument("--events-per-file", type=int, default=2000, help="average records per file")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    if os.path.isdir(args.out) and os.listdir(args.out):
        sys.exit(f"{args.out} is not empty: remove it first")
    r = random.Random(f"{args.seed}/plan")
    jobs, left = [], args.events
    while left > 0:  # one file in ten is a small one from a quiet region/interval
        n = r.randrange(1, 50) if r.random() < 0.1 else r.randrange(args.events_per_file // 2, args.events_per_file * 3 // 2 + 1)
        n = min(max(n, 1), left)
        delivered = START + r.randrange(DAYS * 86400 // 300) * 300 + 900
        jobs.append((args.out, args.seed, len(jobs), r.choices(*zip(*ACCOUNTS))[0], r.choices(*zip(*REGIONS))[0], delivered, n))
        left -= n
    began = time.monotonic()
    with Pool(os.cpu_count(), initializer=init_worker, initargs=(args.seed,)) as pool:
        done = pool.map(write_file, jobs, chunksize=1)
    seconds = time.monotonic() - began
    events, raw, packed = (sum(x) for x in zip(*done))
    manifest = {"events": events, "files": len(jobs), "uncompressed_bytes": raw, "compressed_bytes": packed,
                "events_per_file": args.events_per_file, "seed": args.seed}
    with open(args.out.rstrip("/") + ".manifest.json", "w") as f:
        json.dump(manifest, f, indent=2)
    print(f"{events} events in {len(jobs)} files, {packed / 1e6:.1f} MB gzip, {raw / 1e6:.1f} MB JSON, "
          f"{raw / events:.0f} bytes/event on average, {seconds:.1f} s")


if __name__ == "__main__":
    main()
