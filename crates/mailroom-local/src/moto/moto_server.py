"""Runs moto's server on 127.0.0.1 for one test binary, and exits when that binary does.

The test harness keeps our stdin open; when the harness process ends, for any reason, the pipe
closes and this process exits, so no emulator outlives its tests.

DynamoDB's writes are atomic per item: a conditional write checks and writes in one step, which
is what makes the ledger's leases safe. moto's server handles requests on several threads and
does not lock its DynamoDB writes, so two concurrent conditional updates can both pass the
check. The writes are serialised here, so the emulator keeps DynamoDB's guarantee.

moto's SQS costs time in proportion to the queue's depth for every message it handles, which
SQS does not: each message a ReceiveMessage returns re-reads the queue's attributes (three scans
of the queue, three times over) to find its retention period, each send reads them again for
ContentBasedDeduplication, and each deleted receipt rebuilds the queue's list. On a 10,000
message queue that is most of a second per message, so a benchmark would measure moto's scans
instead of the client's API calls. `_fast_sqs` gives the same answers without the repeated
scans: one clock reading and one pass per count, the retention period read directly, receipt
handles compared without building lists, a batch of deletes in one pass, no counts computed
while a send reads the queue's settings, attribute names converted once, and receipt handles
drawn in one call. Set
MAILROOM_MOTO_STOCK_SQS=1 to run moto's own code instead.

moto's own server closes the connection after every answer; `_keep_alive_server` serves the same
application over connections that stay open (MAILROOM_MOTO_STOCK_SERVER=1 for moto's server).
"""
import base64
import functools
import os
import string
import sys
import threading

from moto.core.utils import unix_time, unix_time_millis
from moto.dynamodb.models import DynamoDBBackend
from moto.server import main
from moto.sqs import models as sqs
from moto.sqs.exceptions import ReceiptHandleIsInvalid

# Re-entrant: a transaction's writes go through the same (locked) backend methods.
_DYNAMODB_WRITES = threading.RLock()


def _atomic(write):
    def locked(self, *args, **kwargs):
        with _DYNAMODB_WRITES:
            return write(self, *args, **kwargs)

    return locked


def _cached_conditions():
    """moto parses a ConditionExpression (or FilterExpression) from its text on every request,
    and an UpdateItem twice (the handler, to check that every placeholder is used, then the
    backend, to evaluate it): about a quarter of the DynamoDB process's time in a loop of the
    intake's conditional UpdateItem. The ledger sends a handful of expressions with new values
    each time. Here each expression is parsed by moto's own parser once per shape (its text,
    its names, its values' placeholders and types), with stand-ins for the values; later
    requests of that shape get a copy of the tree with their own values in place of the
    stand-ins. The tree's nodes, and so every comparison, are moto's own. Values of types whose
    content is not one string (lists, maps, sets, booleans, NULL), and any expression moto's
    parser refuses, are parsed from scratch every time, so moto's errors are its own.
    MAILROOM_MOTO_STOCK_DYNAMODB=1 turns this off with the rest of the DynamoDB fast paths."""
    import copy

    from moto.dynamodb import comparisons
    from moto.dynamodb import models as dynamodb_models
    from moto.dynamodb import responses as dynamodb_responses

    parser_class = comparisons.ConditionExpressionParser
    nodes = (comparisons.Op, comparisons.Func, comparisons.Operand)
    stand_in = "\x00mailroom-value:"
    plans = {}

    def bind(node, values):
        """`node` with each stand-in replaced by its request's value; subtrees without
        stand-ins are shared, not copied (the nodes are never changed after parsing)."""
        if isinstance(node, comparisons.AttributeValue):
            if isinstance(node.value, str) and node.value.startswith(stand_in):
                return comparisons.AttributeValue(values[node.value[len(stand_in) :]])
            return node
        if not isinstance(node, nodes):
            return node
        changes = {}
        for attribute, value in vars(node).items():
            if isinstance(value, nodes):
                bound = bind(value, values)
                if bound is not value:
                    changes[attribute] = bound
            elif isinstance(value, (list, tuple)):
                bound = [bind(v, values) for v in value]
                if any(b is not v for b, v in zip(bound, value)):
                    changes[attribute] = type(value)(bound)
        if not changes:
            return node
        copied = copy.copy(node)
        for attribute, value in changes.items():
            setattr(copied, attribute, value)
        return copied

    class CachedParser:
        bound = True

        def __init__(self, expression, names, values):
            self.expression, self.names, self.values = expression, names, values
            self.expr_attr_names_found = []
            self.expr_attr_values_found = []

        def from_scratch(self):
            parser = parser_class(self.expression, self.names, self.values)
            try:
                return parser.parse()
            finally:
                self.expr_attr_names_found = parser.expr_attr_names_found
                self.expr_attr_values_found = parser.expr_attr_values_found

        def parse(self):
            values = self.values or {}
            shapes = []
            for placeholder, value in values.items():
                if not isinstance(value, dict) or len(value) != 1:
                    return self.from_scratch()
                ((kind, content),) = value.items()
                if kind not in ("S", "N", "B") or not isinstance(content, str):
                    return self.from_scratch()
                shapes.append((placeholder, kind))
            if not self.expression or not isinstance(self.expression, str):
                return self.from_scratch()
            key = (self.expression, tuple(sorted((self.names or {}).items())), tuple(sorted(shapes)))
            plan = plans.get(key)
            if plan is None:
                stand_ins = {p: {kind: stand_in + p} for p, kind in shapes}
                parser = parser_class(self.expression, self.names, stand_ins)
                try:
                    tree = parser.parse()
                except Exception:
                    return self.from_scratch()
                plan = (tree, tuple(parser.expr_attr_names_found), tuple(parser.expr_attr_values_found))
                if len(plans) < 4096:
                    plans[key] = plan
            self.expr_attr_names_found = list(plan[1])
            self.expr_attr_values_found = list(plan[2])
            return bind(plan[0], values) if self.bound else plan[0]

    class CheckingParser(CachedParser):
        """For moto's request handlers, which parse a condition only to check that its
        placeholders are defined and used, and drop the tree: no values bound."""

        bound = False

    def create_condition_expression_parser(expression, names, values):
        return CachedParser(expression, names, values)

    for module in (comparisons, dynamodb_models):
        module.create_condition_expression_parser = create_condition_expression_parser
    dynamodb_responses.create_condition_expression_parser = CheckingParser


# The DynamoDB operations on items, whose requests and answers the fast paths below read.
_ITEM_OPERATIONS = frozenset({
    "GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan",
    "BatchGetItem", "BatchWriteItem", "TransactGetItems", "TransactWriteItems",
})


def _caller(environ, service):
    """(access key, region) of a SigV4 request to `service`, as moto would find them, or None
    when moto would take the account or the region from elsewhere first (`MOTO_ACCOUNT_ID`,
    `x-moto-account-id`, a region in the host or the user agent): those go moto's whole way."""
    import re

    from moto.core.responses import BaseResponse

    credential = re.search(
        rf"Credential=([^/,\s]+)/[^/]+/([^/]+)/{service}/", environ.get("HTTP_AUTHORIZATION", "")
    )
    if not credential:
        return None
    if "MOTO_ACCOUNT_ID" in os.environ or "HTTP_X_MOTO_ACCOUNT_ID" in environ:
        return None
    if BaseResponse.region_regex.search(environ.get("HTTP_HOST", "")) or (
        BaseResponse.region_from_useragent_regex.search(environ.get("HTTP_USER_AGENT", ""))
    ):
        return None
    return credential.group(1), credential.group(2)


def _as_caller(handler, params, caller, service):
    """Sets what moto's `setup_class` would give `handler` for these parameters and this
    caller (access key, region), and records the account's visit as moto does."""
    from moto.iam.models import get_account_id_from, mark_account_as_visited

    handler.params, handler.uri_match = params, {}
    access_key, handler.region = caller
    handler.current_account = get_account_id_from(access_key)
    mark_account_as_visited(
        account_id=handler.current_account,
        access_key=access_key,
        service=service,
        region=handler.region,
    )


def _body(environ):
    """The request's body, left readable for moto's own path."""
    stream = environ["wsgi.input"]
    raw = stream.read()
    stream.seek(0)
    return raw


def _plain_json_results():
    """moto turns a DynamoDB answer into JSON by walking the operation's output shape from
    botocore's model member by member (an attribute picker per key, per item): 28% of the
    DynamoDB process's time in a loop of GetItem. The item operations' answers are already
    the wire's JSON (moto converts its items to `{"S": ...}` maps first), so for those the
    dict is written with `json.dumps` when the walk could not change it: every top-level key
    is a member of the output shape, and every value is a string, number, boolean, list or
    map, with no binary attribute (which the walk would encode) and no null. Anything else
    goes through moto's serializer. The fidelity test reads the same answers from both."""
    import json

    from moto.dynamodb.responses import DynamoResult

    operations = _ITEM_OPERATIONS

    def plain(value):
        if isinstance(value, dict):
            return all(
                isinstance(k, str) and k not in ("B", "BS") and plain(v) for k, v in value.items()
            )
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return isinstance(value, (str, int, float)) and value == value  # no NaN; bools are ints

    original = DynamoResult.execute_result

    def execute_result(self, context):
        operation = context.operation_model
        result = self.result
        shape = operation.output_shape
        if (
            operation.name in operations
            and context.service_model.protocol == "json"
            and isinstance(result, dict)
            and shape is not None
            and set(result) <= set(shape.members)
            and plain(result)
        ):
            version = context.service_model.metadata.get("jsonVersion", "1.0")
            headers = {"Content-Type": f"application/x-amz-json-{version}"}
            return operation.http.get("responseCode", 200), headers, json.dumps(result)
        return original(self, context)

    DynamoResult.execute_result = execute_result


def _json_requests():
    """moto reads a DynamoDB request by walking the operation's input shape from botocore's
    model over the decoded JSON, member by member: a tenth of the DynamoDB process's time in
    the intake's benchmark. For the item operations the walk changes nothing unless the
    request holds a binary value (decoded from base64), a null or a fractional number (which it
    drops or converts), or a top-level key the operation does not have (dropped). Such
    requests go through the walk; the rest are read with `json.loads` alone. The fidelity test
    runs every ledger request through both."""
    import json

    from moto.core.utils import get_service_model
    from moto.dynamodb.responses import DynamoHandler

    operations = _ITEM_OPERATIONS
    members = {}

    def simple(value):
        if isinstance(value, dict):
            return all(k not in ("B", "BS") and simple(v) for k, v in value.items())
        if isinstance(value, list):
            return all(simple(v) for v in value)
        return isinstance(value, (str, int)) and value is not None  # bools are ints

    original = DynamoHandler.parse_parameters

    def parse_parameters(self, request):
        action = self._get_action()
        if action in operations and "json" in (request.content_type or ""):
            try:
                parsed = json.loads(request.data)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict) and simple(parsed):
                if action not in members:
                    model = get_service_model(self.boto3_service_name).operation_model(action)
                    members[action] = set(model.input_shape.members)
                if set(parsed) <= members[action]:
                    self.params = parsed
                    return
        original(self, request)

    DynamoHandler.parse_parameters = parse_parameters
    return operations, simple, members


def _dynamodb_without_setup(readable):
    """moto's DynamoDB handler for an item request, without `setup_class`: that method builds
    werkzeug's request, tries the JSON body as a query string, copies the headers into a
    query dict and walks the model over the body, none of which an item operation reads (its
    handler reads only its parameters, the account and the region). Here the handler gets
    those (the body read by `json.loads` when `_json_requests` would read it so) and moto's
    own `call_action` does the rest: its authorisation count, its errors, its serializer, its
    request id and CRC32 headers. Requests it would read otherwise, or whose account or region
    moto takes from elsewhere, go through moto's whole path."""
    import json

    from moto import settings
    from moto.core.utils import get_service_model
    from moto.dynamodb.responses import DynamoHandler

    operations, simple, members = readable

    def answer(environ):
        """(status, headers, body) from moto's handler, or None for moto's whole path."""
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        service, _, action = target.partition(".")
        if service != "DynamoDB_20120810" or action not in operations:
            return None
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") != "/":
            return None
        content_type = environ.get("CONTENT_TYPE", "")
        caller = _caller(environ, "dynamodb")
        if "json" not in content_type or not caller:
            return None
        if settings.INITIAL_NO_AUTH_ACTION_COUNT != float("inf"):
            return None
        try:
            params = json.loads(_body(environ))
        except ValueError:
            return None
        if not isinstance(params, dict) or not simple(params):
            return None
        if action not in members:
            model = get_service_model("dynamodb").operation_model(action)
            members[action] = set(model.input_shape.members)
        if not set(params) <= members[action]:
            return None
        handler = DynamoHandler()
        handler.headers = {"X-Amz-Target": target, "Content-Type": content_type}
        handler.querystring = {}
        handler.response_headers = {"server": "amazon.com"}
        _as_caller(handler, params, caller, "dynamodb")
        return handler.call_action()

    return answer


def _fast_updates():
    """moto validates an UpdateExpression by walking its parsed tree ten times (placeholders,
    overlaps, keys, functions, types...), and for a new item twice over: 46% of the emulator's
    time in a 1,000-event demo, where the ledger's UpdateItem calls (5 per event) made
    DynamoDB's process the pipeline's bottleneck. The ledger's expressions are of one simple
    shape: `SET name = operand [+ operand], ...` and `REMOVE name, ...`, where a name is
    plain or `#placeholder` and an operand is `:value`, a name, or
    `if_not_exists(name, :value)`. Those are applied here directly, with DynamoDB's rules
    (operands read from the item before the update, a new item created from the key, the
    condition checked first, the item's size limit). Anything else, and anything this path
    would have to refuse (an undefined placeholder, a reserved word, a key attribute, one
    attribute named twice, a type that does not fit), goes to moto's own code, which
    answers with its own errors. A fidelity test compares both on the ledger's writes and on
    those refusals (MAILROOM_MOTO_STOCK_DYNAMODB=1 for moto's own code)."""
    import copy
    import re

    from moto.dynamodb import comparisons
    from moto.dynamodb.exceptions import (
        ConditionalCheckFailed,
        ItemSizeTooLarge,
        ItemSizeToUpdateTooLarge,
    )
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.parsing.reserved_keywords import ReservedKeywords

    name = r"(?:#[A-Za-z0-9_]+|[A-Za-z_][A-Za-z0-9_]*)"
    operand = rf"(?::[A-Za-z0-9_]+|if_not_exists\(\s*{name}\s*,\s*:[A-Za-z0-9_]+\s*\)|{name})"
    set_action = re.compile(rf"\s*({name})\s*=\s*({operand})\s*(?:\+\s*({operand})\s*)?")
    function = re.compile(rf"if_not_exists\(\s*({name})\s*,\s*(:[A-Za-z0-9_]+)\s*\)")
    section = re.compile(r"\b(SET|REMOVE|ADD|DELETE)\b", re.IGNORECASE)

    def split_top(text):
        parts, depth, start = [], 0, 0
        for i, c in enumerate(text):
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
            elif c == "," and depth == 0:
                parts.append(text[start:i])
                start = i + 1
        parts.append(text[start:])
        return parts

    def parse_operand(text):
        if text.startswith(":"):
            return ("value", text)
        m = function.fullmatch(text)
        if m:
            return ("if_not_exists", m.group(1), m.group(2))
        return ("path", text)

    @functools.lru_cache(maxsize=1024)
    def plan(expression):
        """(sets, removes) of a simple expression, else None."""
        marks = list(section.finditer(expression))
        if not marks or expression[: marks[0].start()].strip():
            return None
        keywords = [m.group(1).upper() for m in marks]
        if len(set(keywords)) != len(keywords) or not set(keywords) <= {"SET", "REMOVE"}:
            return None
        sets, removes = [], []
        for i, m in enumerate(marks):
            body = expression[m.end() : marks[i + 1].start() if i + 1 < len(marks) else None]
            for part in split_top(body):
                if keywords[i] == "SET":
                    a = set_action.fullmatch(part)
                    if not a:
                        return None
                    right = [parse_operand(a.group(2))]
                    if a.group(3):
                        right.append(parse_operand(a.group(3)))
                    sets.append((a.group(1), tuple(right)))
                else:
                    target = part.strip()
                    if not re.fullmatch(name, target):
                        return None
                    removes.append(target)
        return tuple(sets), tuple(removes)

    reserved = None

    def resolve(path, names):
        """The attribute a name means, or None when it must go to moto (undefined, reserved)."""
        nonlocal reserved
        if path.startswith("#"):
            return (names or {}).get(path)
        if reserved is None:
            reserved = {w.upper() for w in ReservedKeywords.get_reserved_keywords()}
        return None if path.upper() in reserved else path

    class Unsupported(Exception):
        pass

    def evaluate(operands, item, names, values):
        results = []
        for o in operands:
            if o[0] == "value":
                if o[1] not in (values or {}):
                    raise Unsupported
                results.append(DynamoType(values[o[1]]))
            else:
                attribute = resolve(o[1], names)
                if attribute is None:
                    raise Unsupported
                current = item.attrs.get(attribute) if item is not None else None
                if current is not None:
                    results.append(current)
                elif o[0] == "if_not_exists" and o[2] in (values or {}):
                    results.append(DynamoType(values[o[2]]))
                else:
                    raise Unsupported
        if len(results) == 1:
            return results[0]
        if not all(r.type == "N" for r in results):
            raise Unsupported
        return results[0] + results[1]

    original = DynamoDBBackend.update_item

    def update_item(
        self,
        table_name,
        key,
        update_expression,
        expression_attribute_names,
        expression_attribute_values,
        attribute_updates=None,
        expected=None,
        condition_expression=None,
        return_values_on_condition_check_failure=None,
    ):
        steps = plan(update_expression) if update_expression and not attribute_updates and not expected else None
        if steps is None:
            return original(
                self, table_name, key, update_expression, expression_attribute_names,
                expression_attribute_values, attribute_updates, expected,
                condition_expression, return_values_on_condition_check_failure,
            )
        table = self.get_table(table_name)
        hash_value, range_value = self.get_keys_value(table, key)
        item = table.get_item(hash_value, range_value)
        names, values = expression_attribute_names, expression_attribute_values
        try:
            declared = {a["AttributeName"]: a["AttributeType"] for a in table.attr or []}
            key_attributes = set(table.attribute_keys)
            changes, targets = [], []
            for path, operands in steps[0]:
                attribute = resolve(path, names)
                value = evaluate(operands, item, names, values)
                if attribute is None or attribute in table.table_key_attrs:
                    raise Unsupported
                if attribute in declared and value.type != declared[attribute]:
                    raise Unsupported
                if attribute in key_attributes and value.type in ("S", "B") and not value.value:
                    raise Unsupported
                changes.append((attribute, value))
                targets.append(attribute)
            removes = [resolve(path, names) for path in steps[1]]
            if None in removes or set(removes) & set(table.table_key_attrs):
                raise Unsupported
            targets.extend(removes)
            if len(set(targets)) != len(targets):
                raise Unsupported
        except Unsupported:
            return original(
                self, table_name, key, update_expression, expression_attribute_names,
                expression_attribute_values, attribute_updates, expected,
                condition_expression, return_values_on_condition_check_failure,
            )
        orig_item = copy.deepcopy(item) if table.stream_shard is not None else None
        condition = comparisons.create_condition_expression_parser(
            condition_expression, names, values
        ).parse()
        if not condition.expr(item):
            if return_values_on_condition_check_failure == "ALL_OLD" and item is not None:
                raise ConditionalCheckFailed(item=item.to_json()["Attributes"])
            raise ConditionalCheckFailed
        if item is None:
            data = {table.hash_key_attr: {hash_value.type: hash_value.value}}
            if range_value:
                data[table.range_key_attr] = {range_value.type: range_value.value}
            table.put_item(data)
            item = table.get_item(hash_value, range_value)
        try:
            for attribute, value in changes:
                item.attrs[attribute] = value
        except ItemSizeTooLarge:
            raise ItemSizeToUpdateTooLarge()
        for attribute in removes:
            item.attrs.pop(attribute, None)
        if table.stream_shard is not None:
            table.stream_shard.add(orig_item, item)
        return item

    DynamoDBBackend.update_item = update_item


if os.environ.get("MAILROOM_MOTO_STOCK_DYNAMODB") != "1":
    _cached_conditions()
    _plain_json_results()
    _DYNAMODB_ITEMS = _dynamodb_without_setup(_json_requests())
    _fast_updates()

for _name in ("put_item", "update_item", "delete_item", "transact_write_items"):
    setattr(DynamoDBBackend, _name, _atomic(getattr(DynamoDBBackend, _name)))


def _fast_sqs():
    queue, message, backend = sqs.Queue, sqs.Message, sqs.SQSBackend

    class Visible:
        """The visible messages, found as they are iterated: a receive stops at the count it
        wants, near the front of the queue, instead of listing all of a deep queue's messages
        first. Its length and truth are computed when asked (a long poll waits on truth)."""

        __slots__ = ("queue", "now")

        def __init__(self, queue):
            self.queue, self.now = queue, unix_time_millis()

        def __iter__(self):
            now = self.now
            return (
                m for m in self.queue._messages if now > m.visible_at and not now < m.delayed_until
            )

        def __len__(self):
            return sum(1 for _ in self)

        def __bool__(self):
            return next(iter(self), None) is not None

    def visible_now(self):
        return Visible(self)

    sending = threading.local()

    def count(keep):
        def counted(self):
            if getattr(sending, "active", False):
                # A send reads the queue's settings (ContentBasedDeduplication), never its counts.
                return None
            now = unix_time_millis()
            return sum(1 for m in self._messages if keep(m, now))

        return property(counted)

    queue.messages = property(visible_now)
    queue.approximate_number_of_messages = count(
        lambda m, now: now > m.visible_at and not now < m.delayed_until
    )
    queue.approximate_number_of_messages_delayed = count(lambda m, now: now < m.delayed_until)
    queue.approximate_number_of_messages_not_visible = count(lambda m, now: not now > m.visible_at)

    def settings_only(call):
        def wrapped(self, *args, **kwargs):
            outer = getattr(sending, "active", False)
            sending.active = True
            try:
                return call(self, *args, **kwargs)
            finally:
                sending.active = outer

        return wrapped

    backend.send_message = settings_only(backend.send_message)
    backend.send_message_batch = settings_only(backend.send_message_batch)

    def had_receipt_handle(self, receipt_handle):
        return receipt_handle == self.receipt_handle or receipt_handle in self._old_receipt_handles

    message.had_receipt_handle = had_receipt_handle

    def delete_receipts(self, receipt_handles):
        """Deletes every message that had one of the handles; returns the handles that matched none."""
        wanted = {h for h in receipt_handles if h not in self.deleted_messages}
        if not wanted:
            return wanted
        matched = set()
        # Under the lock moto's add_message appends with: changing the list without it drops
        # a message sent meanwhile (moto's own delete has the same race; SQS never loses a
        # message). A 10,000-event demo lost one delivery to it. The scan stops once every
        # handle is found: received messages sit near the front, so a delete from a deep
        # queue does not walk all of it.
        with self._messages_lock:
            at = []
            for i, m in enumerate(self._messages):
                if m.receipt_handle in wanted or not wanted.isdisjoint(m._old_receipt_handles):
                    at.append(i)
                    handles = m.all_receipt_handles
                    matched.update(wanted.intersection(handles))
                    self.pending_messages.discard(m)
                    self.deleted_messages.update(handles)
                    if len(matched) == len(wanted):
                        break
            for i in reversed(at):
                del self._messages[i]
        return wanted - matched

    def delete_message(self, receipt_handle):
        if delete_receipts(self, [receipt_handle]):
            raise ReceiptHandleIsInvalid()

    queue.delete_message = delete_message

    def delete_message_batch(self, queue_name, receipts):
        invalid = delete_receipts(self.get_queue(queue_name), [r["ReceiptHandle"] for r in receipts])
        success, errors = [], []
        for r in receipts:
            if r["ReceiptHandle"] in invalid:
                errors.append(
                    {
                        "Id": r["Id"],
                        "SenderFault": True,
                        "Code": "ReceiptHandleIsInvalid",
                        "Message": f'The input receipt handle "{r["ReceiptHandle"]}" is not a valid receipt handle.',
                    }
                )
            else:
                success.append(r["Id"])
        return success, errors

    backend.delete_message_batch = delete_message_batch

    def is_message_valid_based_on_retention_period(self, queue_name, message):
        retention = self.get_queue(queue_name).message_retention_period
        return retention + message.sent_timestamp / 1000 > unix_time()

    backend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period

    # Pure functions moto calls per message: a queue's attribute names converted by a regex
    # loop each time, and 185 separate random draws for each receipt handle.
    sqs.camelcase_to_underscores = functools.lru_cache(maxsize=256)(sqs.camelcase_to_underscores)

    def generate_receipt_handle():
        return "".join(sqs.random.choices(string.ascii_lowercase, k=185))

    sqs.generate_receipt_handle = generate_receipt_handle


if os.environ.get("MAILROOM_MOTO_STOCK_SQS") != "1":
    _fast_sqs()


def _fair_queues():
    """An emulation of SQS fair queues, which moto lacks, on every standard queue.

    AWS's rule ("How Amazon SQS fair queues work"): the tenant is the MessageGroupId (a message
    without one is a tenant of its own); a tenant is a noisy neighbour when it holds more than
    10% of the queue's in-flight messages and at least 30 of its own are in flight; while one
    is, a receive returns quiet tenants' visible messages first, and among noisy tenants those
    with the fewest in flight first. Nothing is dropped or throttled: with no quiet message
    waiting, noisy ones come as usual. AWS also counts processing-time share, and keeps a tenant
    noisy until its backlog drains or it sends nothing for 5 minutes; this emulation decides
    from the in-flight counts at each receive.

    The 30 in flight is AWS's, for fleets of consumers; the local pipeline has two instances of
    ten records each, so the threshold here is 5 unless MAILROOM_MOTO_FAIR_MIN_IN_FLIGHT says
    otherwise. A queue tagged `mailroom:fair-queues=off` keeps moto's plain order (the demo's
    comparison)."""
    min_in_flight = int(os.environ.get("MAILROOM_MOTO_FAIR_MIN_IN_FLIGHT", "5"))
    visible = sqs.Queue.messages

    def fair(self):
        if self.fifo_queue or self.tags.get("mailroom:fair-queues") == "off":
            return visible.fget(self)
        # The in-flight count per tenant, from the messages received and not deleted (moto's
        # `pending_messages`, a superset of those in flight), not from the whole queue.
        now = unix_time_millis()
        total, in_flight = 0, {}
        for m in list(self.pending_messages):
            if not now > m.visible_at:
                total += 1
                group = m.group_id
                if group:
                    in_flight[group] = in_flight.get(group, 0) + 1
        noisy = {g: n for g, n in in_flight.items() if n >= min_in_flight and n * 10 > total}
        if not noisy:
            return visible.fget(self)
        shown = list(visible.fget(self))
        if len(shown) < 2:
            return shown
        # Stable: quiet tenants first in their own order, then the noisy, fewest in flight first.
        return sorted(shown, key=lambda m: (m.group_id in noisy, noisy.get(m.group_id, 0)))

    sqs.Queue.messages = property(fair)


if os.environ.get("MAILROOM_MOTO_FAIR_QUEUES") != "0":
    _fair_queues()


def _indexed_dynamodb():
    """DynamoDB answers a Query from one partition; moto reads every item of the table for
    each one, base table and global secondary index alike, so the monitor's sweep (a GSI
    query per shard) slowed with the ledger's size: 4 s early in a 10,000-event demo, 10-16 s
    at 20,000 items. Here a base-table Query starts from its partition, and a GSI Query from
    the index's partition, kept by every write (PutItem, UpdateItem, DeleteItem, and so
    BatchWriteItem) as DynamoDB keeps its indexes; a transaction, which may replace the
    table, has the table's index rebuilt at the next query. moto's own query code then runs on
    those candidates unchanged (its key checks, sort, paging and filters), so the answers are
    moto's own; a fidelity test compares them with MAILROOM_MOTO_STOCK_DYNAMODB=1."""
    from collections import defaultdict

    from moto.dynamodb.models.table import Table

    lock = threading.Lock()
    states = {}  # id(table) -> [table, {index: {value: {pk: (hash, range)}}}, {pk: {index: value}}]
    scoped = threading.local()

    def token(value):
        return (value.type, repr(value.value))

    def single_hash(index):
        keys = [k["AttributeName"] for k in index.schema if k["KeyType"] == "HASH"]
        return keys[0] if len(keys) == 1 else None

    def place(state, table, hash_key, range_key):
        _, index, where = state
        pk = (token(hash_key), None if range_key is None else token(range_key))
        for name, value in where.pop(pk, {}).items():
            members = index[name].get(value)
            if members is not None:
                members.pop(pk, None)
                if not members:
                    del index[name][value]
        try:
            item = table.get_item(hash_key, range_key)
        except Exception:  # an item the table cannot hold is not in any index
            item = None
        if item is None:
            return
        for gsi in table.global_indexes or []:
            attribute = single_hash(gsi)
            value = item.attrs.get(attribute) if attribute else None
            if value is not None:
                index[gsi.name].setdefault(token(value), {})[pk] = (hash_key, range_key)
                where.setdefault(pk, {})[gsi.name] = token(value)

    def state_of(table):
        state = states.get(id(table))
        if state is None or state[0] is not table:
            state = [table, defaultdict(dict), {}]
            for item in original_all_items(table):
                place(state, table, item.hash_key, item.range_key)
            states[id(table)] = state
        return state

    def indexing(write, key_of):
        def indexed(self, table_name, *args, **kwargs):
            try:
                return write(self, table_name, *args, **kwargs)
            finally:
                try:
                    table = self.get_table(table_name)
                    hash_key, range_key = self.get_keys_value(table, key_of(args, kwargs))
                except Exception:
                    pass
                else:
                    with lock:
                        if id(table) in states:
                            place(state_of(table), table, hash_key, range_key)

        return indexed

    backend = DynamoDBBackend
    backend.put_item = indexing(
        backend.put_item, lambda a, k: a[0] if a else k["item_attrs"]
    )
    backend.update_item = indexing(backend.update_item, lambda a, k: a[0] if a else k["key"])
    backend.delete_item = indexing(backend.delete_item, lambda a, k: a[0] if a else k["key"])
    transact = backend.transact_write_items

    def transact_write_items(self, transact_items):
        try:
            return transact(self, transact_items)
        finally:
            with lock:
                states.clear()

    backend.transact_write_items = transact_write_items

    original_all_items, original_query = Table.all_items, Table.query

    def all_items(self):
        if getattr(scoped, "table", None) is self:
            return scoped.items
        return original_all_items(self)

    def query(self, hash_key, *args, **kwargs):
        # moto's backend passes index_name as the eighth positional argument.
        index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
        conditions = kwargs.get("hash_key_conditions") or []
        candidates = None
        if index_name is None and hash_key is not None:
            partition = self.items.get(hash_key)
            if partition is None:
                candidates = []
            elif self.range_key_attr:
                candidates = list(partition.values())
            else:
                candidates = [partition]
        elif index_name is not None and len(conditions) == 1:
            gsi = {i.name: i for i in self.global_indexes or []}.get(index_name)
            if gsi is not None and single_hash(gsi) == conditions[0][0]:
                with lock:
                    keys = list(
                        state_of(self)[1].get(index_name, {}).get(token(conditions[0][1]), {}).values()
                    )
                candidates = []
                for h, r in keys:
                    partition = self.items.get(h)
                    item = partition.get(r) if self.range_key_attr and partition else partition
                    if item is not None:
                        candidates.append(item)
        if candidates is None:
            return original_query(self, hash_key, *args, **kwargs)
        scoped.table, scoped.items = self, candidates
        try:
            return original_query(self, hash_key, *args, **kwargs)
        finally:
            scoped.table, scoped.items = None, None

    Table.all_items = all_items
    Table.query = query


def _parsed_once():
    """moto parses an UpdateExpression twice per UpdateItem (once to list its placeholders,
    once to run it), and the ledger sends the same few expressions thousands of times. A parse
    depends on the text alone and nothing changes the tree it returns (the validator works on
    its own deep copy), so each text is parsed once. The handler then walks that tree twice per
    request to list the placeholders it uses (9% of the DynamoDB process's CPU per UpdateItem):
    for a parsed-once tree each walk is done once too, and the same clauses are returned."""
    from moto.dynamodb.parsing.ast_nodes import Node
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    make = UpdateExpressionParser.make.__func__
    walks = {}  # id(tree) -> (tree, {clause types: clauses})

    @functools.lru_cache(maxsize=1024)
    def cached(text):
        tree = make(UpdateExpressionParser, text)
        if len(walks) < 4096:
            walks[id(tree)] = (tree, {})
        return tree

    UpdateExpressionParser.make = classmethod(lambda cls, text: cached(text))
    find_clauses = Node.find_clauses

    def found_once(self, clause_types):
        entry = walks.get(id(self))
        if entry is None or entry[0] is not self:
            return find_clauses(self, clause_types)
        key = tuple(clause_types)
        if key not in entry[1]:
            entry[1][key] = tuple(find_clauses(self, clause_types))
        return list(entry[1][key])

    Node.find_clauses = found_once


if os.environ.get("MAILROOM_MOTO_STOCK_DYNAMODB") != "1":
    _indexed_dynamodb()
    _parsed_once()


def _lean_server():
    """Work moto does per request that AWS does not, and that no answer depends on (profiled
    with py-spy during a 10,000-event demo, where moto was the pipeline's bottleneck):
    - werkzeug logs every request line to a stderr nobody reads (about 10% of moto's time);
    - the request router lists moto's package directory on disk for every request (3%);
    - SNS builds and signs a new X.509 certificate for every message it delivers (5%); SNS
      signs each message with a long-lived certificate, which is what this does: the first
      message of a subscription goes through moto's own code, later ones reuse its
      certificate URL and are signed the same way;
    - every answer's request id (52 characters) is drawn one `random.choice` call at a time
      (a tenth of each process's time in the intake's benchmark): the same characters from
      the same generator, which `/moto-api/seed` still seeds, are drawn in one call;
    - every lookup of a service's backend for an account takes a lock, lists the accounts and
      compares the dict with each of the ~150 services' dicts in use, by a Python `__eq__`
      (7% of the DynamoDB process): for an account already there none of that does anything
      (moto's reset empties the dicts when it forgets them), so it is returned at once."""
    import logging

    import moto.backends as backends
    from moto.sns import models as sns

    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules

    original = sns.Subscription.get_post_data

    def get_post_data(self, message, message_id, subject, message_attributes=None):
        cert_url = getattr(self, "_mailroom_cert_url", None)
        if cert_url is None:
            data = original(self, message, message_id, subject, message_attributes)
            self._mailroom_cert_url = data["SigningCertURL"]
            return data
        timestamp = sns.iso_8601_datetime_with_milliseconds()
        string_to_sign = (
            f"Message\n{message}\nMessageId\n{message_id}\nTimestamp\n{timestamp}\n"
            f"TopicArn\n{self.topic.arn}\nType\nNotification\n"
        )
        signature = self.private_key().sign(
            string_to_sign.encode("UTF-8"), sns.padding.PKCS1v15(), sns.hashes.SHA256()
        )
        data = {
            "Type": "Notification",
            "MessageId": message_id,
            "TopicArn": self.topic.arn,
            "Message": message,
            "Timestamp": timestamp,
            "SignatureVersion": "2",
            "Signature": base64.b64encode(signature).decode("utf-8"),
            "SigningCertURL": cert_url,
            "UnsubscribeURL": f"https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:us-east-1:{self.account_id}:{self.topic.name}:2bcfbf39-05c3-41de-beaa-fcfcc21c8f55",
        }
        if subject:
            data["Subject"] = subject
        if message_attributes:
            data["MessageAttributes"] = message_attributes
        return data

    sns.Subscription.get_post_data = get_post_data

    from moto.moto_api._internal.moto_random import HEX_CHARS, MotoRandom

    def get_random_string(self, length=20, include_digits=True, lower_case=False):
        pool = string.ascii_letters + (string.digits if include_digits else "")
        drawn = "".join(self.choices(pool, k=length))
        return drawn.lower() if lower_case else drawn

    MotoRandom.get_random_string = get_random_string
    hex_chars = [str(c) for c in HEX_CHARS]
    MotoRandom.get_random_hex = lambda self, length=8: "".join(self.choices(hex_chars, k=length))

    from moto.core.base_backend import BackendDict

    create = BackendDict.__getitem__

    def backend_for(self, account_id):
        if dict.__contains__(self, account_id):
            return dict.__getitem__(self, account_id)
        return create(self, account_id)

    BackendDict.__getitem__ = backend_for


if os.environ.get("MAILROOM_MOTO_STOCK_SERVER") != "1":
    _lean_server()


def _strict_sqs():
    """SQS refuses what moto accepts: characters outside XML's set in a body or an attribute,
    and a message (body plus every attribute's name, type and value, in bytes) over the
    queue's MaximumMessageSize. moto checks only the body's length, in characters. Here a
    send is refused as SQS refuses it, and a batch entry fails alone, as in SQS."""
    import base64
    import re

    from moto.sqs.exceptions import InvalidParameterValue, SQSException

    # SQS's allowed set: #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF.
    forbidden = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

    class InvalidMessageContents(SQSException):
        def __init__(self, message):
            super().__init__("InvalidMessageContents", message)

    allowed = "#x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF"

    def attribute_bytes(value):
        if value.get("BinaryValue") is not None:
            raw = value["BinaryValue"]
            if isinstance(raw, str):
                try:
                    return len(base64.b64decode(raw))
                except ValueError:
                    return len(raw.encode("utf-8"))
            return len(raw)
        return len((value.get("StringValue") or "").encode("utf-8", "surrogatepass"))

    def check(queue, body, attributes):
        bad = forbidden.search(body or "")
        if bad:
            raise InvalidMessageContents(
                f"Invalid binary character '#x{ord(bad.group()):X}' was found in the message body, "
                f"the set of allowed characters is {allowed}"
            )
        size = len((body or "").encode("utf-8", "surrogatepass"))
        for name, value in (attributes or {}).items():
            if not isinstance(value, dict):
                continue
            text = value.get("StringValue")
            if text is not None:
                bad = forbidden.search(text)
                if bad:
                    raise InvalidParameterValue(
                        f"Message (user) attribute '{name}' value contains invalid binary character "
                        f"'#x{ord(bad.group()):X}'. You must use only the following supported "
                        f"characters: {allowed}."
                    )
            size += len(name.encode("utf-8")) + len((value.get("DataType") or "").encode("utf-8"))
            size += attribute_bytes(value)
        limit = int(queue.maximum_message_size)
        if size > limit:
            raise InvalidParameterValue(
                "One or more parameters are invalid. Reason: Message must be shorter than "
                f"{limit} bytes."
            )

    backend = sqs.SQSBackend
    send_message, send_message_batch = backend.send_message, backend.send_message_batch

    def strict_send(self, queue_name, message_body, message_attributes=None, *args, **kwargs):
        check(self.get_queue(queue_name), message_body, message_attributes)
        return send_message(self, queue_name, message_body, message_attributes, *args, **kwargs)

    def strict_batch(self, queue_name, entries):
        queue = self.get_queue(queue_name)
        good, failed = {}, []
        for key, entry in entries.items():
            try:
                check(queue, entry.get("MessageBody"), entry.get("MessageAttributes"))
                good[key] = entry
            except SQSException as err:
                failed.append(
                    {"Id": entry["Id"], "SenderFault": True, "Code": err.code, "Message": err.message}
                )
        if not good:
            return [], failed
        # moto's batch code sends each entry through `strict_send`, which passes them now.
        sent, more_failed = send_message_batch(self, queue_name, good)
        return sent, failed + more_failed

    backend.send_message = strict_send
    backend.send_message_batch = strict_batch


if os.environ.get("MAILROOM_MOTO_LAX_SQS") != "1":
    _strict_sqs()


def _cached_dispatch():
    """Two lookups moto repeats for every request with the same answer each time: the list of a
    response class's methods (`inspect.getmembers`, 4% of the DynamoDB process's time in the
    intake's benchmark) and the backend a host name belongs to (a walk over every service's
    URL patterns). Both depend only on their argument."""
    from moto.core import responses
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    responses.method_names_from_class = functools.lru_cache(maxsize=None)(
        responses.method_names_from_class
    )
    find = DomainDispatcherApplication.get_backend_for_host
    found = {}

    def get_backend_for_host(self, host):
        if host not in found:
            found[host] = find(self, host)
        return found[host]

    DomainDispatcherApplication.get_backend_for_host = get_backend_for_host


def _fast_publish():
    """SNS's Publish and PublishBatch, with moto's own handler and backend but without its
    model-driven request parser and XML serializer: those two were more than half of the
    services process's work per publish in the intake's benchmark, the backend's publish (and
    its delivery to SQS) a tenth. The form is read with `parse_qsl` into the parameters moto's
    parser would give (the topic, the message, a subject, group and deduplication ids, and
    String or Number attributes); any other parameter (binary attributes, a phone number, a
    target ARN, a message structure) and any other action go to moto's own code. A plain
    answer (message ids only) is written as moto writes it; an error, or an answer with
    anything more (a FIFO sequence number, failed entries), is written by moto's own
    serializer, from a handler set up from the same request. MAILROOM_MOTO_STOCK_SNS=1 turns
    this off; a fidelity test compares the two."""
    import re
    from urllib.parse import parse_qsl
    from xml.sax.saxutils import escape

    from moto.core.exceptions import ServiceException
    from moto.core.responses import ActionResult
    from moto.sns.responses import SNSResponse
    from moto.utilities.aws_headers import gen_amzn_requestid_long
    from werkzeug.exceptions import HTTPException

    entry = re.compile(r"PublishBatchRequestEntries\.member\.(\d+)\.(.+)")
    attribute = re.compile(r"MessageAttributes\.entry\.(\d+)\.(Name|Value\.DataType|Value\.StringValue)")
    plain = {"Message", "Subject", "MessageGroupId", "MessageDeduplicationId"}
    xmlns = "http://sns.amazonaws.com/doc/2010-03-31/"

    def fields(pairs, into):
        """`pairs` (name, value) into `into` as moto's parser reads them; False if any is not
        one this path knows."""
        attributes = {}
        for name, value in pairs:
            if name in plain:
                into[name] = value
                continue
            m = attribute.fullmatch(name)
            if not m:
                return False
            attributes.setdefault(int(m.group(1)), {})[m.group(2)] = value
        if attributes:
            into["MessageAttributes"] = {}
            for _, a in sorted(attributes.items()):
                if "Name" not in a:
                    return False
                value = {"DataType": a.get("Value.DataType")}
                if "Value.StringValue" in a:
                    value["StringValue"] = a["Value.StringValue"]
                into["MessageAttributes"][a["Name"]] = value
        return True

    def params_of(form):
        action = form.pop("Action", None)
        form.pop("Version", None)
        params = {}
        if "TopicArn" in form:
            params["TopicArn"] = form.pop("TopicArn")
        if action == "Publish":
            return action, params if fields(form.items(), params) else None
        if action != "PublishBatch":
            return action, None
        entries = {}
        for name, value in form.items():
            m = entry.fullmatch(name)
            if not m:
                return action, None
            entries.setdefault(int(m.group(1)), []).append((m.group(2), value))
        params["PublishBatchRequestEntries"] = []
        for _, pairs in sorted(entries.items()):
            one = {}
            ids = [v for n, v in pairs if n == "Id"]
            if not fields([(n, v) for n, v in pairs if n != "Id"], one):
                return action, None
            if ids:
                one["Id"] = ids[0]
            params["PublishBatchRequestEntries"].append(one)
        return action, params

    def written(action, result):
        """moto's XML for a plain answer, else None."""
        rid = None
        if action == "Publish" and set(result) == {"MessageId"}:
            inner = f"<MessageId>{escape(result['MessageId'])}</MessageId>"
        elif action == "PublishBatch" and not result.get("Failed") and all(
            set(e) == {"Id", "MessageId"} for e in result.get("Successful", [])
        ):
            members = "".join(
                f"<member><Id>{escape(e['Id'])}</Id><MessageId>{escape(e['MessageId'])}</MessageId></member>"
                for e in result["Successful"]
            )
            inner = (f"<Successful>{members}</Successful>" if members else "<Successful/>") + "<Failed/>"
        else:
            return None
        headers = {"Content-Type": "text/xml", "server": "amazon.com"}
        rid = gen_amzn_requestid_long(headers)
        body = (
            f'<{action}Response xmlns="{xmlns}"><{action}Result>{inner}</{action}Result>'
            f"<ResponseMetadata><RequestId>{rid}</RequestId></ResponseMetadata></{action}Response>"
        )
        return 200, headers, body

    def by_moto(handler, outcome):
        """What moto's `call_action` answers for `outcome` (a result, or an exception)."""
        headers = handler.response_headers
        if isinstance(outcome, ServiceException):
            status, se_headers, body = handler.serialized(ActionResult(outcome))
            se_headers["status"] = status
            response = body, se_headers
        elif isinstance(outcome, HTTPException):
            response_headers = dict(outcome.get_headers() or [])
            response_headers["status"] = outcome.code
            response = outcome.description, response_headers
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            status, headers, body = handler.serialized(outcome)
            return (status, *handler._enrich_response(headers, body))
        status, headers, body = handler._transform_response(headers, response)
        return (status, *handler._enrich_response(headers, body))

    def publish(environ, full_request):
        """moto's answer (status, headers, body), or None to let moto's own code serve it."""
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") != "/":
            return None
        if not environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
            return None
        caller = _caller(environ, "sns")
        if not caller:
            return None
        try:
            form = dict(
                parse_qsl(_body(environ).decode("utf-8"), keep_blank_values=True, strict_parsing=False)
            )
        except (UnicodeDecodeError, ValueError):
            return None
        action, params = params_of(form)
        if params is None:
            return None
        handler = SNSResponse()
        _as_caller(handler, params, caller, "sns")
        try:
            result = handler.publish() if action == "Publish" else handler.publish_batch()
            answer = written(action, result.result) if type(result) is ActionResult else None
            if answer is not None:
                return answer
            outcome = result
        except (ServiceException, HTTPException) as e:
            outcome = e
        request = full_request()
        full = SNSResponse()
        full.setup_class(request, request.raw_url, dict(request.headers))
        return by_moto(full, outcome)

    return publish


def _without_flask(dispatcher):
    """moto's answer for a request, without Flask around it. moto's server finds a service's
    Flask app, which matches the URL to one of moto's handlers and calls it through
    `convert_to_flask_response`; Flask's request context, CORS hooks and debug-mode form checks
    around that call were an eighth of the DynamoDB process's time in the intake's benchmark.
    Here the same app's URL map finds the same handler, which is called as
    `convert_to_flask_response` calls it, and its answer becomes the same response. moto's own
    API (`/moto-api`), a URL no handler matches, and any handler moto did not wrap go through
    Flask as before."""
    from botocore.exceptions import ClientError
    from moto.core.request import Request
    from moto.core.utils import convert_to_flask_response
    from moto.moto_api import recorder
    from werkzeug.exceptions import HTTPException
    from werkzeug.wrappers import Response

    class ServerRequest(Request):
        from_wsgi_server = True

    publish = _fast_publish() if os.environ.get("MAILROOM_MOTO_STOCK_SNS") != "1" else None
    dynamodb_items = globals().get("_DYNAMODB_ITEMS")
    reasons = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found"}

    def written(answer, start_response):
        """A handler's (status, headers, body) as werkzeug's Response would write it."""
        status, headers, body = answer
        data = body.encode("utf-8") if isinstance(body, str) else body
        headers = [(name, str(value)) for name, value in headers.items()]
        if not any(name.lower() == "content-type" for name, _ in headers):
            headers.append(("Content-Type", "text/plain; charset=utf-8"))
        start_response(f"{status} {reasons.get(int(status), 'Error')}", headers)
        return [data]

    def serve(environ, start_response):
        if environ.get("PATH_INFO", "").startswith("/moto-api"):
            return dispatcher(environ, start_response)
        if dynamodb_items is not None:
            try:
                result = dynamodb_items(environ)
            except ClientError as exc:
                result = 400, {}, exc.response["Error"]["Message"]
            if result is not None:
                return written(result, start_response)
        answer = publish and publish(environ, lambda: ServerRequest(environ))
        if answer is not None:
            return written(answer, start_response)
        app = dispatcher.get_application(environ)
        try:
            endpoint, _ = app.url_map.bind_to_environ(environ).match()
        except HTTPException:
            return dispatcher(environ, start_response)
        view = app.view_functions.get(endpoint)
        if not isinstance(view, convert_to_flask_response):
            return dispatcher(environ, start_response)
        request = ServerRequest(environ)
        recorder._record_request(request)
        try:
            result = view.callback(request, request.raw_url, dict(request.headers))
        except ClientError as exc:
            result = 400, {}, exc.response["Error"]["Message"]
        status, headers, content = result if len(result) == 3 else (200, {}, result)
        response = Response(response=content, status=status, headers=headers)
        if request.method == "HEAD" and "content-length" in headers:
            response.headers["Content-Length"] = headers["content-length"]
        return response(environ, start_response)

    return serve


def _keep_alive_server(port):
    """Serves moto's application over HTTP/1.1 connections that stay open.

    werkzeug's development server, which moto's own `main` runs, closes the connection after
    every response (its comment: http.server cannot drain a request's body before the next
    request line) and then waits 10 ms for stray bytes. So every SDK call paid a TCP connect, a
    new thread and that thread's start-up under the interpreter lock: in the intake's benchmark
    about a quarter of each moto process's samples were thread starts and the socket writes
    that waited for the lock behind them. Here each connection keeps one thread, a request's
    body is read in full (by its Content-Length, or its chunks) before the application runs, so
    the next request line is always where the stream stands, and a response goes out in one
    write with TCP_NODELAY. The application, its routing and every answer are moto's own.
    MAILROOM_MOTO_STOCK_SERVER=1 runs moto's `main` instead."""
    import io
    import socket
    import socketserver
    import traceback
    from urllib.parse import unquote, urlsplit

    from moto.core.request import PRESERVED_HEADER_NAMES_ENVIRON_KEY
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    os.environ.setdefault("MOTO_PORT", str(port))
    app = _without_flask(DomainDispatcherApplication(create_backend_app))

    def latin1(text):
        # WSGI carries the URL's bytes as latin-1 text (werkzeug's `_wsgi_encoding_dance`).
        return text.encode("utf-8").decode("latin-1")

    class BadRequest(Exception):
        pass

    def read_chunked(rfile):
        parts = []
        while True:
            size_line = rfile.readline(65537)
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BadRequest("bad chunk size")
            if size == 0:
                while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            parts.append(rfile.read(size))
            rfile.readline(65537)

    class Handler(socketserver.StreamRequestHandler):
        disable_nagle_algorithm = True
        rbufsize = 1 << 16
        wbufsize = 0

        def handle(self):
            try:
                while self.one():
                    pass
            except (ConnectionError, socket.timeout):
                pass

        def reply(self, status, headers, body, head=False):
            lines = [f"HTTP/1.1 {status}"]
            lines += [f"{name}: {value}" for name, value in headers]
            data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
            self.wfile.write(data if head else data + body)

        def one(self):
            line = self.rfile.readline(65537)
            if not line:
                return False
            try:
                method, target, version = line.decode("latin-1").split()
            except ValueError:
                self.reply("400 Bad Request", [("Connection", "close"), ("Content-Length", "0")], b"")
                return False
            environ = {
                "wsgi.version": (1, 0),
                "wsgi.url_scheme": "http",
                "wsgi.errors": sys.stderr,
                "wsgi.multithread": True,
                "wsgi.multiprocess": False,
                "wsgi.run_once": False,
                "SERVER_SOFTWARE": "mailroom-moto",
                "REQUEST_METHOD": method,
                "SCRIPT_NAME": "",
                "REQUEST_URI": latin1(target),
                "RAW_URI": latin1(target),
                "REMOTE_ADDR": self.client_address[0],
                "REMOTE_PORT": self.client_address[1],
                "SERVER_NAME": "127.0.0.1",
                "SERVER_PORT": str(port),
                "SERVER_PROTOCOL": version,
                PRESERVED_HEADER_NAMES_ENVIRON_KEY: {},
            }
            url = urlsplit(target)
            path = f"/{url.netloc}{url.path}" if not url.scheme and url.netloc else url.path
            environ["PATH_INFO"] = latin1(unquote(path))
            environ["QUERY_STRING"] = latin1(url.query)
            while True:
                header = self.rfile.readline(65537)
                if header in (b"\r\n", b"\n", b""):
                    break
                name, colon, value = header.decode("latin-1").partition(":")
                if not colon:
                    self.reply("400 Bad Request", [("Connection", "close"), ("Content-Length", "0")], b"")
                    return False
                name, value = name.strip(), value.strip()
                if "_" in name:
                    continue  # as werkzeug: `X_Foo` must not pass for `X-Foo`
                key = name.upper().replace("-", "_")
                if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                    key = "HTTP_" + key
                    if key in environ:
                        value = f"{environ[key]},{value}"
                environ[key] = value
            if url.scheme and url.netloc:
                environ["HTTP_HOST"] = url.netloc
            if environ.get("HTTP_EXPECT", "").lower() == "100-continue":
                self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            try:
                if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
                    body = read_chunked(self.rfile)
                    environ["CONTENT_LENGTH"] = str(len(body))
                    del environ["HTTP_TRANSFER_ENCODING"]
                else:
                    body = self.rfile.read(int(environ.get("CONTENT_LENGTH") or 0))
            except (BadRequest, ValueError):
                self.reply("400 Bad Request", [("Connection", "close"), ("Content-Length", "0")], b"")
                return False
            environ["wsgi.input"] = io.BytesIO(body)
            keep = version == "HTTP/1.1" and environ.get("HTTP_CONNECTION", "").lower() != "close"

            started = []

            def start_response(status, headers, exc_info=None):
                started[:] = [status, headers]
                return lambda data: None  # moto's apps return their bodies

            try:
                chunks = app(environ, start_response)
                try:
                    data = b"".join(chunks)
                finally:
                    if hasattr(chunks, "close"):
                        chunks.close()
                status, headers = started
            except Exception:
                traceback.print_exc()
                status, headers, data = "500 Internal Server Error", [], b"Internal Server Error"
            drop = ("connection", "transfer-encoding", "keep-alive")
            headers = [(n, v) for n, v in headers if n.lower() not in drop]
            if not any(n.lower() == "content-length" for n, _ in headers):
                headers.append(("Content-Length", str(len(data))))
            if not keep:
                headers.append(("Connection", "close"))
            self.reply(status, headers, data, head=method == "HEAD")
            return keep

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True
        request_queue_size = 256

    with Server(("127.0.0.1", port), Handler) as server:
        server.serve_forever()


def exit_when_parent_goes():
    sys.stdin.read()
    os._exit(0)


threading.Thread(target=exit_when_parent_goes, daemon=True).start()
if os.environ.get("MAILROOM_MOTO_STOCK_SERVER") == "1":
    main(["-H", "127.0.0.1", "-p", sys.argv[1]])
else:
    _cached_dispatch()
    _keep_alive_server(int(sys.argv[1]))
