#!/usr/bin/env python3
"""Security and wiring checks for infra/spherecast.yaml that cfn-lint does not make.

    check_template.py TEMPLATE                  run every check; exit 0 when all pass, 1 when not
    check_template.py --emit-configs DIR TEMPLATE
                                                also write the settings TOML each instance gets
                                                (one per worker fleet type) into DIR
    check_template.py --list-checks             the check ids, one per line
    --scaler-variable NAME                      the scaler Lambda's configuration variable
                                                (default SPHERECAST_CONFIG_TOML)

Output: one line per problem, `FAIL [check-id] what is wrong`, then one line per check,
`ok [check-id] N checked` or `FAILED [check-id] ...`. A check that found nothing to look at
reports `ok [...] 0 checked`: tests/infra.rs requires every count on the real template to be
at least one, so no check passes by having nothing to see.

The template is read with cfn-lint's own decoder (so !Ref, !Sub and !GetAtt parse). Values are
compared in a canonical text form: `${Name}` for a Ref, `${Res.Attr}` for a GetAtt, Sub
strings as written, `${AWS::Partition}` read as `aws`. Fn::If inside policies is checked on
both branches. The settings checks evaluate the template with sample parameter values.
"""

import argparse
import json
import re
import sys
import tomllib

from cfnlint.decode import decode

CHECKS = {
    "bucket-acl": "no bucket sets AccessControl; every bucket disables ACLs (BucketOwnerEnforced)",
    "bucket-public-access-block": "every bucket blocks public access with all four settings true",
    "bucket-encryption": "every bucket has default encryption",
    "public-principal": 'no resource policy allows Principal "*" without a scoping condition',
    "service-principal-unscoped": "resource policies allow AWS services only with aws:SourceArn or "
    "aws:SourceAccount",
    "trust-policy": "roles trust only AWS services",
    "wildcard-action": 'no Allow of Action "*", "service:*" or NotAction; other wildcards only '
    "from an allow-list",
    "star-resource": 'Resource "*" only for actions that support no resource-level permissions',
    "managed-policy": "roles attach only allow-listed AWS managed policies",
    "lambda-permission": "every Lambda permission names the source ARN of its caller",
    "queue-policy-scope": "queue policies admit only the ingress bucket, by aws:SourceArn",
    "notification-dependency": "a bucket notifying a queue depends on that queue's policy",
    "rtmp-ingress": "port 1935 is open only to the PublisherCidr parameter, which refuses "
    "0.0.0.0/0",
    "open-ingress": "0.0.0.0/0 and ::/0 reach only ports 80/443 of a load balancer",
    "ssh-ingress": "no security group opens port 22",
    "dead-letter": "every notified queue has a redrive policy: maxReceiveCount 5, a DLQ "
    "retaining longer",
    "ingress-lifecycle": "the ingress bucket aborts incomplete multipart uploads",
    "ingress-suffix-filter": "the ingress bucket notifies only for keys ending in .flv",
    "worker-visibility": "the worker's visibility_secs equals the queue's VisibilityTimeout",
    "scaler-config": "the scaler Lambda's configuration has the scaler's keys and matches the "
    "fleet type and a state object its role may use",
}

# Actions whose wildcard form is acceptable: read-only listings of fleet state.
ALLOWED_ACTION_WILDCARDS = {"ec2:describe*", "autoscaling:describe*"}

# Actions that have no resource-level permissions, so Resource "*" is the only choice
# (Service Authorization Reference). Nothing that changes anything is here.
STAR_RESOURCE_ACTIONS = {
    "ec2:describespotfleetrequests",
    "ec2:describespotfleetinstances",
    "ec2:describeinstances",
    "autoscaling:describeautoscalinggroups",
    "autoscaling:describeautoscalinginstances",
} | ALLOWED_ACTION_WILDCARDS

ALLOWED_MANAGED_POLICIES = {
    # SSM Session Manager instead of SSH on every instance.
    "AmazonSSMManagedInstanceCore",
    # Spot Fleet's service role: launch, tag and terminate the fleet's instances.
    "service-role/AmazonEC2SpotFleetTaggingRole",
}

# Condition keys that tie an Allow to this account's own resources.
SCOPING_KEYS = {
    "aws:sourcearn",
    "aws:sourceaccount",
    "aws:sourceowner",
    "aws:principalorgid",
    "aws:principalaccount",
    "aws:sourcevpce",
    "aws:sourcevpc",
}

RTMP_PORT = 1935
PUBLISHER_PARAMETER = "PublisherCidr"
MAX_RECEIVE_COUNT = 5
DEFAULT_RETENTION = 345600  # SQS default, 4 days
DEFAULT_VISIBILITY = 30  # SQS default
WORKER_DEFAULT_VISIBILITY = 120  # [worker] visibility_secs default (worker/src/config.rs)
INGRESS_SUFFIX = ".flv"
SCALER_BACKENDS = {"SpotFleet": "spot-fleet", "AutoScalingGroup": "auto-scaling-group"}


# --------------------------------------------------------------------------- template access


class Template:
    def __init__(self, data):
        self.data = data
        self.resources = data.get("Resources") or {}
        self.parameters = data.get("Parameters") or {}
        self.conditions = data.get("Conditions") or {}

    def of_type(self, *types):
        for name, res in self.resources.items():
            if isinstance(res, dict) and res.get("Type") in types:
                yield name, res, res.get("Properties") or {}


def canon(value):
    """A value in canonical text form, for comparing names and ARNs."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value).replace("${AWS::Partition}", "aws")
    if isinstance(value, dict) and len(value) == 1:
        (fn, arg), = value.items()
        if fn == "Ref":
            return "aws" if arg == "AWS::Partition" else "${%s}" % arg
        if fn == "Fn::GetAtt":
            return "${%s}" % (arg if isinstance(arg, str) else ".".join(map(str, arg)))
        if fn == "Fn::Sub":
            if isinstance(arg, str):
                return canon(arg)
            text, variables = arg
            text = canon(text)
            for key, val in variables.items():
                text = text.replace("${%s}" % key, canon(val))
            return text
        if fn == "Fn::Join":
            sep, items = arg
            return sep.join(canon(i) for i in items)
    return json.dumps(value, sort_keys=True, default=str)


def ref_name(value):
    """The resource a Ref or GetAtt points at, else None."""
    if isinstance(value, dict) and len(value) == 1:
        (fn, arg), = value.items()
        if fn == "Ref" and isinstance(arg, str):
            return arg
        if fn == "Fn::GetAtt":
            return (arg.split(".")[0] if isinstance(arg, str) else arg[0])
    return None


def branches(value):
    """Every alternative of a value: both sides of Fn::If, AWS::NoValue dropped."""
    if isinstance(value, dict) and list(value) == ["Fn::If"]:
        _, yes, no = value["Fn::If"]
        return branches(yes) + branches(no)
    if isinstance(value, dict) and value.get("Ref") == "AWS::NoValue":
        return []
    return [value]


def as_list(value):
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [b for item in items for b in branches(item)]


def statements(document):
    if not isinstance(document, dict):
        return []
    return [s for s in as_list(document.get("Statement")) if isinstance(s, dict)]


def lower_keys(condition):
    """{operator: {key: value}} with every key lower-cased, operators kept."""
    out = {}
    for op, pairs in (condition or {}).items():
        if isinstance(pairs, dict):
            out[op] = {str(k).lower(): v for k, v in pairs.items()}
    return out


def condition_keys(statement):
    return {k for pairs in lower_keys(statement.get("Condition")).values() for k in pairs}


def principals(statement):
    """("*", None) for a public principal, else (kind, [values])."""
    p = statement.get("Principal")
    if p == "*":
        return [("*", "*")]
    out = []
    if isinstance(p, dict):
        for kind, vals in p.items():
            for v in as_list(vals):
                out.append(("*" if v == "*" else kind, v))
    return out


def policy_documents(tpl):
    """(resource, label, document, kind) for every policy; kind: identity, resource or trust."""
    for name, _, props in tpl.of_type("AWS::IAM::Role"):
        yield name, "trust policy", props.get("AssumeRolePolicyDocument"), "trust"
        for policy in as_list(props.get("Policies")):
            label = "policy %s" % canon(policy.get("PolicyName"))
            yield name, label, policy.get("PolicyDocument"), "identity"
    for name, _, props in tpl.of_type("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        yield name, "policy", props.get("PolicyDocument"), "identity"
    for name, _, props in tpl.of_type(
        "AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy"
    ):
        yield name, "resource policy", props.get("PolicyDocument"), "resource"


def allows(tpl, kinds):
    for name, label, doc, kind in policy_documents(tpl):
        if kind not in kinds:
            continue
        for i, st in enumerate(statements(doc)):
            if st.get("Effect") == "Allow":
                where = "%s %s statement %s" % (name, label, st.get("Sid") or i)
                yield where, st


def notifications(tpl):
    """(bucket, props, queue resource name, queue configuration) per S3 -> SQS notification."""
    for name, _, props in tpl.of_type("AWS::S3::Bucket"):
        config = props.get("NotificationConfiguration") or {}
        for qc in as_list(config.get("QueueConfigurations")):
            yield name, props, ref_name(qc.get("Queue")), qc


# --------------------------------------------------------------------------- evaluation
# Concrete values for the settings checks: sample parameters, one fleet type at a time.

SAMPLE_PSEUDO = {
    "AWS::Region": "eu-west-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::StackName": "spherecast",
    "AWS::URLSuffix": "amazonaws.com",
}
SAMPLE_PARAMETERS = {
    "ReleaseBucket": "release-bucket",
    "PublisherCidr": "203.0.113.7/32",
    "ImageId": "ami-0123456789abcdef0",
}
NO_VALUE = object()


class Evaluator:
    def __init__(self, tpl, overrides):
        self.tpl = tpl
        self.params = {}
        for name, spec in tpl.parameters.items():
            value = overrides.get(name, SAMPLE_PARAMETERS.get(name, spec.get("Default")))
            if spec.get("Type") == "CommaDelimitedList" and isinstance(value, str):
                value = value.split(",")
            self.params[name] = value

    def condition(self, name):
        return self.truth(self.tpl.conditions[name])

    def truth(self, expr):
        (fn, arg), = expr.items()
        if fn == "Fn::Equals":
            return str(self.value(arg[0])) == str(self.value(arg[1]))
        if fn == "Fn::Not":
            return not self.truth(arg[0])
        if fn == "Fn::And":
            return all(self.truth(a) for a in arg)
        if fn == "Fn::Or":
            return any(self.truth(a) for a in arg)
        if fn == "Condition":
            return self.condition(arg)
        raise ValueError("cannot evaluate condition %r" % fn)

    def ref(self, name):
        if name in SAMPLE_PSEUDO:
            return SAMPLE_PSEUDO[name]
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.params:
            return self.params[name]
        res = self.tpl.resources[name]
        props = res.get("Properties") or {}
        kind = res.get("Type")
        if kind == "AWS::SQS::Queue":
            queue = self.value(props.get("QueueName", name))
            return "https://sqs.eu-west-1.amazonaws.com/123456789012/%s" % queue
        if kind == "AWS::S3::Bucket":
            return self.value(props.get("BucketName", name.lower()))
        if kind == "AWS::AutoScaling::AutoScalingGroup":
            return self.value(props.get("AutoScalingGroupName", name))
        if kind == "AWS::EC2::SpotFleet":
            return "sfr-0123abcd-0123-4567-89ab-0123456789ab"
        if kind == "AWS::Logs::LogGroup":
            return self.value(props.get("LogGroupName", name))
        return "sample-%s" % name

    def getatt(self, name, attr):
        if attr == "PrivateIp":
            return "10.20.0.10"
        return "sample-%s.%s" % (name, attr)

    def sub(self, text, variables):
        def one(match):
            key = match.group(1)
            if key.startswith("!"):
                return "${%s}" % key[1:]
            if key in variables:
                return str(self.value(variables[key]))
            if "." in key and key.split(".")[0] in self.tpl.resources:
                return self.getatt(*key.split(".", 1))
            return str(self.ref(key))

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def value(self, v):
        if isinstance(v, list):
            return [x for x in (self.value(i) for i in v) if x is not NO_VALUE]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            (fn, arg), = v.items()
            if fn == "Ref":
                return self.ref(arg)
            if fn == "Fn::GetAtt":
                parts = arg.split(".", 1) if isinstance(arg, str) else arg
                return self.getatt(*parts)
            if fn == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                return self.sub(text, variables)
            if fn == "Fn::If":
                cond, yes, no = arg
                return self.value(yes if self.condition(cond) else no)
            if fn == "Fn::Join":
                return arg[0].join(str(self.value(i)) for i in arg[1])
            if fn == "Fn::Select":
                return self.value(arg[1])[int(arg[0])]
            if fn == "Fn::Base64":
                return self.value(arg)
        return {k: self.value(x) for k, x in v.items()}


def fleet_types(tpl):
    spec = tpl.parameters.get("WorkerFleetType") or {}
    return list(spec.get("AllowedValues") or [spec.get("Default", "SpotFleet")])


def user_data_configs(tpl, evaluator):
    """{resource: TOML text} from `<<TOML ... TOML` heredocs in the instances' user-data."""
    found = {}
    for name, _, props in tpl.of_type("AWS::EC2::Instance", "AWS::EC2::LaunchTemplate"):
        data = props.get("UserData")
        if data is None:
            data = (props.get("LaunchTemplateData") or {}).get("UserData")
        if data is None:
            continue
        script = evaluator.value(data)
        match = re.search(r"<<'?TOML'?\n(.*?)\nTOML\n", script, re.S)
        if match:
            # Shell variables in the unquoted heredoc ($PUBLISH_KEY) get sample values.
            found[name] = re.sub(r"\$([A-Za-z_][A-Za-z0-9_]*)", r"sample-\1", match.group(1))
    return found


# The environment variable the scaler Lambda reads its TOML document from
# (scaler::lambda::CONFIG_VARIABLE); --scaler-variable overrides it.
SCALER_VARIABLE = "SPHERECAST_CONFIG_TOML"


def scaler_configs(tpl, evaluator):
    """{function: TOML text or None when the variable is missing} for each Lambda function."""
    found = {}
    for name, _, props in tpl.of_type("AWS::Lambda::Function"):
        env = ((props.get("Environment") or {}).get("Variables")) or {}
        found[name] = evaluator.value(env[SCALER_VARIABLE]) if SCALER_VARIABLE in env else None
    return found


# --------------------------------------------------------------------------- checks
# Each returns (problems, number of things it looked at).


def check_bucket_acl(tpl):
    problems, n = [], 0
    for name, _, props in tpl.of_type("AWS::S3::Bucket"):
        n += 1
        if "AccessControl" in props:
            problems.append(
                "bucket %s sets AccessControl %s: no canned ACLs (public-read least of all)"
                % (name, canon(props["AccessControl"]))
            )
        rules = as_list((props.get("OwnershipControls") or {}).get("Rules"))
        if not any(r.get("ObjectOwnership") == "BucketOwnerEnforced" for r in rules):
            problems.append(
                "bucket %s keeps ACLs enabled: set OwnershipControls ObjectOwnership "
                "BucketOwnerEnforced" % name
            )
    return problems, n


def check_public_access_block(tpl):
    problems, n = [], 0
    flags = ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
    for name, _, props in tpl.of_type("AWS::S3::Bucket"):
        n += 1
        pab = props.get("PublicAccessBlockConfiguration")
        if not isinstance(pab, dict):
            problems.append("bucket %s has no PublicAccessBlockConfiguration" % name)
            continue
        off = [f for f in flags if pab.get(f) is not True and str(pab.get(f)).lower() != "true"]
        if off:
            problems.append(
                "bucket %s does not block public access: %s not true" % (name, ", ".join(off))
            )
    return problems, n


def check_bucket_encryption(tpl):
    problems, n = [], 0
    for name, _, props in tpl.of_type("AWS::S3::Bucket"):
        n += 1
        rules = as_list(
            (props.get("BucketEncryption") or {}).get("ServerSideEncryptionConfiguration")
        )
        if not rules:
            problems.append("bucket %s has no BucketEncryption" % name)
    return problems, n


def check_public_principal(tpl):
    problems, n = [], 0
    for where, st in allows(tpl, {"resource"}):
        n += 1
        if any(kind == "*" for kind, _ in principals(st)):
            if not (condition_keys(st) & SCOPING_KEYS):
                problems.append(
                    '%s allows Principal "*" with no condition scoping it (one of %s): '
                    "that is a public policy" % (where, ", ".join(sorted(SCOPING_KEYS)))
                )
    return problems, n


def check_service_principal(tpl):
    problems, n = [], 0
    for where, st in allows(tpl, {"resource"}):
        services = [v for kind, v in principals(st) if kind == "Service"]
        if not services:
            continue
        n += 1
        keys = condition_keys(st)
        if not keys & {"aws:sourcearn", "aws:sourceaccount"}:
            problems.append(
                "%s allows service %s with no aws:SourceArn or aws:SourceAccount condition: "
                "any account's %s could use it" % (where, canon(services[0]), canon(services[0]))
            )
    return problems, n


def check_trust_policy(tpl):
    problems, n = [], 0
    for where, st in allows(tpl, {"trust"}):
        n += 1
        for kind, value in principals(st):
            if kind == "*":
                problems.append('%s trusts everyone (Principal "*"): roles here are for AWS '
                                "services only" % where)
            elif kind != "Service":
                problems.append(
                    "%s trusts %s %s: roles here are for AWS services only"
                    % (where, kind, canon(value))
                )
    return problems, n


def actions_of(st):
    return [canon(a) for a in as_list(st.get("Action"))]


def check_wildcard_action(tpl):
    problems, n = [], 0
    for where, st in allows(tpl, {"identity", "resource"}):
        n += 1
        if "NotAction" in st:
            problems.append("%s allows NotAction: everything else is granted" % where)
        for action in actions_of(st):
            if action == "*" or action.endswith(":*"):
                problems.append('%s allows action "%s": name the actions' % (where, action))
            elif "*" in action and action.lower() not in ALLOWED_ACTION_WILDCARDS:
                problems.append(
                    '%s allows wildcard action "%s" (allowed wildcards: %s)'
                    % (where, action, ", ".join(sorted(ALLOWED_ACTION_WILDCARDS)))
                )
    return problems, n


def is_star_resource(resource):
    text = canon(resource)
    if text == "*":
        return True
    parts = text.split(":", 5)
    return len(parts) == 6 and parts[0] == "arn" and parts[5] == "*"


def check_star_resource(tpl):
    problems, n = [], 0
    for where, st in allows(tpl, {"identity", "resource"}):
        n += 1
        if "NotResource" in st:
            problems.append("%s allows NotResource: everything else is in scope" % where)
        if not any(is_star_resource(r) for r in as_list(st.get("Resource"))):
            continue
        bad = [a for a in actions_of(st) if a.lower() not in STAR_RESOURCE_ACTIONS]
        if bad:
            problems.append(
                '%s allows %s on Resource "*": those actions take resource ARNs; only %s '
                "need *" % (where, ", ".join(bad), ", ".join(sorted(STAR_RESOURCE_ACTIONS)))
            )
    return problems, n


def check_managed_policy(tpl):
    problems, n = [], 0
    for name, _, props in tpl.of_type("AWS::IAM::Role"):
        for arn in as_list(props.get("ManagedPolicyArns")):
            n += 1
            text = canon(arn)
            policy = text.split(":iam::aws:policy/", 1)[-1] if ":iam::aws:policy/" in text else None
            if policy not in ALLOWED_MANAGED_POLICIES:
                problems.append(
                    "role %s attaches managed policy %s (allowed: %s)"
                    % (name, text, ", ".join(sorted(ALLOWED_MANAGED_POLICIES)))
                )
    return problems, n


def check_lambda_permission(tpl):
    problems, n = [], 0
    for name, _, props in tpl.of_type("AWS::Lambda::Permission"):
        n += 1
        principal = canon(props.get("Principal"))
        if principal == "*" or "SourceArn" not in props:
            problems.append(
                "Lambda permission %s lets %s invoke the function without a SourceArn: "
                "any rule or bucket of any account could" % (name, principal)
            )
    return problems, n


def bucket_arns(tpl, bucket):
    """Canonical ARNs that name a bucket resource."""
    props = tpl.resources[bucket].get("Properties") or {}
    arns = {"${%s.Arn}" % bucket, "arn:aws:s3:::${%s}" % bucket}
    if "BucketName" in props:
        arns.add("arn:aws:s3:::" + canon(props["BucketName"]))
    return arns


def check_queue_policy_scope(tpl):
    problems, n = [], 0
    notified = {}
    for bucket, _, queue, _ in notifications(tpl):
        notified.setdefault(queue, set()).update(bucket_arns(tpl, bucket))
    for name, _, props in tpl.of_type("AWS::SQS::QueuePolicy"):
        queues = [ref_name(q) for q in as_list(props.get("Queues"))]
        expected = set().union(*(notified.get(q, set()) for q in queues))
        for i, st in enumerate(statements(props.get("PolicyDocument"))):
            if st.get("Effect") != "Allow":
                continue
            n += 1
            where = "queue policy %s statement %s" % (name, st.get("Sid") or i)
            arns = set()
            for op, pairs in lower_keys(st.get("Condition")).items():
                if op in ("ArnEquals", "ArnLike", "StringEquals") and "aws:sourcearn" in pairs:
                    arns.update(canon(v) for v in as_list(pairs["aws:sourcearn"]))
            if not arns:
                problems.append(
                    "%s is not scoped by aws:SourceArn: any bucket (of any account) could "
                    "send to the queue" % where
                )
            elif not expected:
                problems.append(
                    "%s is scoped to %s, but no bucket in the template notifies %s"
                    % (where, ", ".join(sorted(arns)), ", ".join(map(str, queues)))
                )
            elif not arns <= expected:
                problems.append(
                    "%s admits %s, not the ingress bucket (%s)"
                    % (where, ", ".join(sorted(arns - expected)), ", ".join(sorted(expected)))
                )
    return problems, n


def check_notification_dependency(tpl):
    problems, n = [], 0
    policy_of = {}
    for name, _, props in tpl.of_type("AWS::SQS::QueuePolicy"):
        for q in as_list(props.get("Queues")):
            policy_of.setdefault(ref_name(q), set()).add(name)
    for bucket, _, queue, _ in notifications(tpl):
        n += 1
        depends = set(as_list(tpl.resources[bucket].get("DependsOn")))
        if not policy_of.get(queue, set()) & depends:
            problems.append(
                "bucket %s notifies %s without DependsOn its queue policy (%s): S3 validates "
                "the destination when the bucket is created and the stack fails"
                % (bucket, queue, ", ".join(sorted(policy_of.get(queue, ()))) or "none")
            )
    return problems, n


def port_bounds(tpl, value):
    """(lowest, highest) a port may be: a number, or a parameter's allowed range."""
    name = ref_name(value)
    if name is not None:
        spec = tpl.parameters.get(name) or {}
        if spec.get("AllowedValues"):
            ports = [int(v) for v in spec["AllowedValues"]]
            return min(ports), max(ports)
        return int(spec.get("MinValue", 0)), int(spec.get("MaxValue", 65535))
    return int(value), int(value)


def port_range(tpl, rule):
    """(from, to) of an ingress rule, widened over parameters; None when unreadable."""
    proto = str(rule.get("IpProtocol"))
    if proto in ("-1", "all"):
        return 0, 65535
    try:
        low, _ = port_bounds(tpl, rule.get("FromPort"))
        _, high = port_bounds(tpl, rule.get("ToPort"))
        return low, high
    except (TypeError, ValueError):
        return None


def ingress_rules(tpl):
    """(where, security group resource, rule) for inline and separate ingress rules."""
    for name, _, props in tpl.of_type("AWS::EC2::SecurityGroup"):
        for i, rule in enumerate(as_list(props.get("SecurityGroupIngress"))):
            yield "%s ingress %d" % (name, i), name, rule
    for name, _, props in tpl.of_type("AWS::EC2::SecurityGroupIngress"):
        yield name, ref_name(props.get("GroupId")), props


def covers(tpl, rule, port):
    ports = port_range(tpl, rule)
    return ports is None or ports[0] <= port <= ports[1]


def check_rtmp_ingress(tpl):
    problems, n = [], 0
    # Without the parameter every rule on 1935 fails below; n counts those rules only, so the
    # real template's count shows that an RTMP rule was seen.
    spec = tpl.parameters.get(PUBLISHER_PARAMETER)
    if spec is not None:
        pattern = spec.get("AllowedPattern")
        default = spec.get("Default")
        if default is not None and str(default) in ("0.0.0.0/0", "::/0"):
            problems.append("parameter %s defaults to %s" % (PUBLISHER_PARAMETER, default))
        if not pattern:
            problems.append(
                "parameter %s has no AllowedPattern: 0.0.0.0/0 would be accepted"
                % PUBLISHER_PARAMETER
            )
        elif re.fullmatch(pattern, "0.0.0.0/0") or not re.fullmatch(pattern, "203.0.113.7/32"):
            problems.append(
                "parameter %s AllowedPattern %r must refuse 0.0.0.0/0 and accept 203.0.113.7/32"
                % (PUBLISHER_PARAMETER, pattern)
            )
    for where, _, rule in ingress_rules(tpl):
        if not covers(tpl, rule, RTMP_PORT):
            continue
        n += 1
        sources = {k: canon(rule[k]) for k in rule if k in (
            "CidrIp", "CidrIpv6", "SourceSecurityGroupId", "SourceSecurityGroupName",
            "SourcePrefixListId")}
        if sources != {"CidrIp": "${%s}" % PUBLISHER_PARAMETER}:
            problems.append(
                "%s opens RTMP port %d to %s: only CidrIp !Ref %s may reach it"
                % (where, RTMP_PORT, sources or "nothing named", PUBLISHER_PARAMETER)
            )
    return problems, n


def check_open_ingress(tpl):
    problems, n = [], 0
    lb_groups = set()
    for _, _, props in tpl.of_type("AWS::ElasticLoadBalancingV2::LoadBalancer"):
        lb_groups.update(ref_name(g) for g in as_list(props.get("SecurityGroups")))
    for where, group, rule in ingress_rules(tpl):
        n += 1
        cidr = canon(rule.get("CidrIp", rule.get("CidrIpv6", "")))
        if cidr not in ("0.0.0.0/0", "::/0"):
            continue
        ports = port_range(tpl, rule)
        web = ports is not None and ports[0] == ports[1] and ports[0] in (80, 443)
        if not (web and group in lb_groups):
            problems.append(
                "%s opens %s to %s: only ports 80/443 of a load balancer may be"
                % (where, "all ports" if ports is None or ports == (0, 65535)
                   else "ports %d-%d" % ports, cidr)
            )
    return problems, n


def check_ssh_ingress(tpl):
    problems, n = [], 0
    for where, _, rule in ingress_rules(tpl):
        n += 1
        if covers(tpl, rule, 22):
            problems.append("%s opens SSH port 22: use SSM Session Manager" % where)
    return problems, n


def check_dead_letter(tpl):
    problems, n = [], 0
    queues = dict((name, props) for name, _, props in tpl.of_type("AWS::SQS::Queue"))
    for _, _, queue, _ in notifications(tpl):
        if queue in queues and "RedrivePolicy" not in queues[queue]:
            problems.append(
                "queue %s receives S3 events but has no RedrivePolicy: a poison message "
                "would come back forever" % queue
            )
    for name, props in queues.items():
        redrive = props.get("RedrivePolicy")
        if redrive is None:
            continue
        n += 1
        if isinstance(redrive, str):
            redrive = json.loads(redrive)
        count = redrive.get("maxReceiveCount")
        if str(count) != str(MAX_RECEIVE_COUNT):
            problems.append(
                "queue %s redrives after maxReceiveCount %s, not %d"
                % (name, count, MAX_RECEIVE_COUNT)
            )
        target = ref_name(redrive.get("deadLetterTargetArn"))
        if target not in queues:
            problems.append(
                "queue %s redrives to %s, not a queue of this template" % (name, target)
            )
            continue
        own = int(props.get("MessageRetentionPeriod", DEFAULT_RETENTION))
        dlq = int(queues[target].get("MessageRetentionPeriod", DEFAULT_RETENTION))
        if dlq <= own:
            problems.append(
                "dead-letter queue %s keeps messages %d s, not longer than %s's %d s: "
                "a redriven message could expire before anyone looks" % (target, dlq, name, own)
            )
    return problems, n


def check_ingress_lifecycle(tpl):
    problems, n = [], 0
    for bucket in sorted({b for b, _, _, _ in notifications(tpl)}):
        n += 1
        props = tpl.resources[bucket].get("Properties") or {}
        rules = as_list((props.get("LifecycleConfiguration") or {}).get("Rules"))
        if not any(
            r.get("Status") == "Enabled"
            and (r.get("AbortIncompleteMultipartUpload") or {}).get("DaysAfterInitiation")
            for r in rules
        ):
            problems.append(
                "ingress bucket %s has no enabled lifecycle rule with "
                "AbortIncompleteMultipartUpload: parts of cut-off uploads stay forever" % bucket
            )
    return problems, n


def check_ingress_suffix(tpl):
    problems, n = [], 0
    for bucket, _, queue, qc in notifications(tpl):
        n += 1
        rules = as_list(((qc.get("Filter") or {}).get("S3Key") or {}).get("Rules"))
        suffixes = [r.get("Value") for r in rules if str(r.get("Name")).lower() == "suffix"]
        if suffixes != [INGRESS_SUFFIX]:
            problems.append(
                "bucket %s notifies %s with suffix filter %s, not %r: other objects (the "
                "scaler's state) would raise events"
                % (bucket, queue, suffixes or "none", INGRESS_SUFFIX)
            )
    return problems, n


def check_worker_visibility(tpl):
    problems, n = [], 0
    notified = {q for _, _, q, _ in notifications(tpl)}
    for fleet in fleet_types(tpl):
        ev = Evaluator(tpl, {"WorkerFleetType": fleet})
        urls = {ev.ref(q): q for q in notified if q in tpl.resources}
        for resource, text in user_data_configs(tpl, ev).items():
            doc = tomllib.loads(text)
            url = (doc.get("queue") or {}).get("url")
            if url is None:
                continue
            n += 1
            queue = urls.get(url)
            if queue is None:
                problems.append(
                    "%s (%s): the worker reads %s, not a notified queue" % (resource, fleet, url)
                )
                continue
            props = tpl.resources[queue].get("Properties") or {}
            queue_secs = int(props.get("VisibilityTimeout", DEFAULT_VISIBILITY))
            worker = doc.get("worker") or {}
            worker_secs = int(worker.get("visibility_secs", WORKER_DEFAULT_VISIBILITY))
            if queue_secs != worker_secs:
                problems.append(
                    "%s (%s): the worker's visibility_secs is %d but queue %s has "
                    "VisibilityTimeout %d" % (resource, fleet, worker_secs, queue, queue_secs)
                )
    return problems, n


def role_allows(tpl, role, action, resource):
    for policy in as_list((tpl.resources[role].get("Properties") or {}).get("Policies")):
        for st in statements(policy.get("PolicyDocument")):
            if st.get("Effect") == "Allow" and action in actions_of(st) and resource in [
                canon(r) for r in as_list(st.get("Resource"))
            ]:
                return True
    return False


def check_scaler_config(tpl):
    problems, n = [], 0
    schema = {
        "queue": {"url"},
        "scaler": {"backend", "fleet", "state", "policy"},
        "scaler.policy": {"min", "max", "jobs_per_instance"},
    }
    ingress = sorted({b for b, _, _, _ in notifications(tpl)})
    for fleet in fleet_types(tpl):
        ev = Evaluator(tpl, {"WorkerFleetType": fleet})
        for function, text in scaler_configs(tpl, ev).items():
            n += 1
            where = "%s (%s)" % (function, fleet)
            if text is None:
                problems.append(
                    "%s has no %s environment variable: the scaler reads its configuration "
                    "from it" % (where, SCALER_VARIABLE)
                )
                continue
            try:
                doc = tomllib.loads(text)
            except tomllib.TOMLDecodeError as err:
                problems.append("%s: %s is not TOML: %s" % (where, SCALER_VARIABLE, err))
                continue
            scaler = doc.get("scaler") or {}
            tables = {"queue": doc.get("queue") or {}, "scaler": scaler,
                      "scaler.policy": scaler.get("policy") or {}}
            if set(doc) != {"queue", "scaler"}:
                problems.append(
                    "%s: %s has sections %s, not [queue] and [scaler]"
                    % (where, SCALER_VARIABLE, sorted(doc))
                )
            for table, keys in schema.items():
                if set(tables[table]) != keys:
                    problems.append(
                        "%s: [%s] has keys %s, the scaler reads %s"
                        % (where, table, sorted(tables[table]), sorted(keys))
                    )
            queues = sorted(ev.ref(q) for q in {q for _, _, q, _ in notifications(tpl)})
            url = (doc.get("queue") or {}).get("url")
            if url not in queues:
                problems.append(
                    "%s: queue url %r is not the queue the ingress bucket notifies %s"
                    % (where, url, queues)
                )
            fleets = sorted(
                ev.ref(name)
                for name, res, _ in tpl.of_type(
                    "AWS::EC2::SpotFleet", "AWS::AutoScaling::AutoScalingGroup"
                )
                if "Condition" not in res or ev.condition(res["Condition"])
            )
            if scaler.get("fleet") not in fleets:
                problems.append(
                    "%s: fleet %r is none of this template's fleets %s"
                    % (where, scaler.get("fleet"), fleets)
                )
            if scaler.get("backend") != SCALER_BACKENDS.get(fleet):
                problems.append(
                    "%s: backend %r does not match WorkerFleetType %s"
                    % (where, scaler.get("backend"), fleet)
                )
            state = str(scaler.get("state", ""))
            buckets = [ev.ref(b) for b in ingress]
            match = re.fullmatch(r"s3://([^/]+)/(.+)", state)
            if not match or match.group(1) not in buckets:
                problems.append(
                    "%s: state %r is not an object in the ingress bucket %s"
                    % (where, state, buckets)
                )
                continue
            role = ref_name((tpl.resources[function].get("Properties") or {}).get("Role"))
            bucket_res = ingress[buckets.index(match.group(1))]
            names = {canon((tpl.resources[bucket_res].get("Properties") or {}).get("BucketName")),
                     "${%s}" % bucket_res}
            arns = {"arn:aws:s3:::%s/%s" % (b, match.group(2)) for b in names}
            for action in ("s3:GetObject", "s3:PutObject"):
                allowed = role in tpl.resources and any(
                    role_allows(tpl, role, action, a) for a in arns
                )
                if not allowed:
                    problems.append(
                        "%s: role %s may not %s the state object %s" % (where, role, action, state)
                    )
            # Without ListBucket a missing object reads as 403, not NoSuchKey: the first run
            # (no state yet) would fail, and every run after it.
            bucket_arns_ = {"arn:aws:s3:::%s" % b for b in names}
            if role not in tpl.resources or not any(
                role_allows(tpl, role, "s3:ListBucket", a) for a in bucket_arns_
            ):
                problems.append(
                    "%s: role %s may not s3:ListBucket %s, so a missing state object answers "
                    "403 instead of NoSuchKey and the first run fails"
                    % (where, role, match.group(1))
                )
    return problems, n


RUNNERS = {
    "bucket-acl": check_bucket_acl,
    "bucket-public-access-block": check_public_access_block,
    "bucket-encryption": check_bucket_encryption,
    "public-principal": check_public_principal,
    "service-principal-unscoped": check_service_principal,
    "trust-policy": check_trust_policy,
    "wildcard-action": check_wildcard_action,
    "star-resource": check_star_resource,
    "managed-policy": check_managed_policy,
    "lambda-permission": check_lambda_permission,
    "queue-policy-scope": check_queue_policy_scope,
    "notification-dependency": check_notification_dependency,
    "rtmp-ingress": check_rtmp_ingress,
    "open-ingress": check_open_ingress,
    "ssh-ingress": check_ssh_ingress,
    "dead-letter": check_dead_letter,
    "ingress-lifecycle": check_ingress_lifecycle,
    "ingress-suffix-filter": check_ingress_suffix,
    "worker-visibility": check_worker_visibility,
    "scaler-config": check_scaler_config,
}
assert RUNNERS.keys() == CHECKS.keys()


def emit_configs(tpl, directory):
    """Writes RESOURCE-FLEETTYPE.toml per instance settings document and Lambda config."""
    import os

    os.makedirs(directory, exist_ok=True)
    written = []
    for fleet in fleet_types(tpl):
        ev = Evaluator(tpl, {"WorkerFleetType": fleet})
        scaler = {k: v for k, v in scaler_configs(tpl, ev).items() if v is not None}
        for kind, docs in (("settings", user_data_configs(tpl, ev)), ("scaler", scaler)):
            for resource, text in docs.items():
                path = os.path.join(directory, "%s-%s-%s.toml" % (kind, resource, fleet))
                with open(path, "w") as f:
                    f.write(text)
                written.append(path)
    for path in written:
        print("config %s" % path)


def main():
    global SCALER_VARIABLE
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("template", nargs="?")
    parser.add_argument("--emit-configs", metavar="DIR")
    parser.add_argument("--list-checks", action="store_true")
    parser.add_argument(
        "--scaler-variable",
        metavar="NAME",
        help="environment variable holding the scaler Lambda's TOML (default %s)" % SCALER_VARIABLE,
    )
    args = parser.parse_args()
    if args.scaler_variable:
        SCALER_VARIABLE = args.scaler_variable
    if args.list_checks:
        for check, what in CHECKS.items():
            print("%s\t%s" % (check, what))
        return 0
    if not args.template:
        parser.error("a template path is required")
    data, matches = decode(args.template)
    if matches or data is None:
        for m in matches:
            print("FAIL [decode] %s" % m, file=sys.stdout)
        return 2
    tpl = Template(data)
    failed = []
    summary = []
    for check, run in RUNNERS.items():
        try:
            problems, n = run(tpl)
        except Exception as err:  # a template the check cannot read is a failure too
            problems, n = ["cannot check: %s: %s" % (type(err).__name__, err)], 0
        for p in problems:
            print("FAIL [%s] %s" % (check, p))
        if problems:
            failed.append(check)
            summary.append("FAILED [%s] %d problem(s)" % (check, len(problems)))
        else:
            summary.append("ok [%s] %d checked" % (check, n))
    print("\n".join(summary))
    if args.emit_configs:
        emit_configs(tpl, args.emit_configs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
