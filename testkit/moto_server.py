"""moto_server with what kiln's tests need that moto lacks.

1. moto evaluates every IAM policy against the resource "*", so a policy that denies one SSM
   parameter denies nothing. AWS evaluates ssm:GetParameter(s) against each parameter's ARN (and a
   GetParameters call naming a denied parameter is refused as a whole). This shim makes moto do
   the same for SSM reads.
2. moto stores Auto Scaling lifecycle hooks but answers CompleteLifecycleAction and
   RecordLifecycleActionHeartbeat with a 500 (not implemented), and never puts an instance in
   Pending:Wait or Terminating:Wait. The shim adds both actions to moto's Auto Scaling responses
   (moto authenticates and authorizes every call before it reaches them, as for its own actions)
   and a test-only endpoint, /moto-api/kiln/lifecycle: POST puts an instance of a group in a
   hook's wait state (or, with {"throttle": N}, makes the next N CompleteLifecycleAction calls
   answer AWS's Throttling error), GET returns every call the two actions accepted, in order, and
   how many were throttled.

Signature checks and every other action are moto's own.

Run as: python moto_server.py -H HOST -p PORT  (the arguments of moto_server).
"""

import json
import sys
import threading
import time
import uuid

from moto.server import main
from moto.ssm.responses import SimpleSystemManagerResponse

_authorize = SimpleSystemManagerResponse._authenticate_and_authorize_normal_action


def _parameter_arn(response, name):
    if name.startswith("arn:"):
        return name.rsplit(":", 1)[0] if name.count(":") > 5 else name
    name = name.split(":", 1)[0]
    return f"arn:aws:ssm:{response.region}:{response.current_account}:parameter/{name.lstrip('/')}"


def _authorize_per_parameter(self, resource="*"):
    action = self._get_action()
    try:
        body = json.loads(self.body or "{}")
    except ValueError:
        body = {}
    if action == "GetParameters" and body.get("Names"):
        for name in body["Names"]:
            _authorize(self, _parameter_arn(self, name))
        return
    if action == "GetParameter" and body.get("Name"):
        return _authorize(self, _parameter_arn(self, body["Name"]))
    if action == "GetParametersByPath" and body.get("Path"):
        return _authorize(self, _parameter_arn(self, body["Path"]))
    return _authorize(self, resource)


SimpleSystemManagerResponse._authenticate_and_authorize_normal_action = _authorize_per_parameter


# --- Auto Scaling lifecycle actions -------------------------------------------------------------

from moto.autoscaling.exceptions import AutoscalingClientError, ValidationError  # noqa: E402
from moto.autoscaling.models import autoscaling_backends  # noqa: E402
from moto.autoscaling.responses import AutoScalingResponse  # noqa: E402
from moto.core import DEFAULT_ACCOUNT_ID  # noqa: E402
from moto.core.responses import EmptyResult  # noqa: E402
from moto.moto_api._internal import urls as moto_api_urls  # noqa: E402

_lock = threading.Lock()
# (region, group, instance id) -> {"hook", "transition", "token"}: the lifecycle actions waiting.
_waiting = {}
# Every call accepted, in order.
_record = []
# CompleteLifecycleAction calls still to throttle, and those throttled so far.
_faults = {"throttle": 0, "throttled": 0}


class Throttling(AutoscalingClientError):
    """What AWS answers a caller over its request rate (retried by SDKs)."""

    code = "Throttling"
    message = "Rate exceeded"

_WAIT_STATE = {"launch": "Pending:Wait", "terminate": "Terminating:Wait"}
# Where an answered action takes the instance.
_NEXT_STATE = {
    ("launch", "CONTINUE"): "InService",
    ("launch", "ABANDON"): "Terminating:Proceed",
    ("terminate", "CONTINUE"): "Terminating:Proceed",
    ("terminate", "ABANDON"): "Terminating:Proceed",
}


def _instance_state(backend, group, instance):
    asg = backend.autoscaling_groups.get(group)
    if asg is None:
        return None
    return next((s for s in asg.instance_states if s.instance.id == instance), None)


def _waiting_action(self):
    """The action a call names (by instance or token), or AWS's ValidationError."""
    group = self._get_param("AutoScalingGroupName")
    hook = self._get_param("LifecycleHookName")
    instance = self._get_param("InstanceId")
    token = self._get_param("LifecycleActionToken")
    if not group or not hook or not (instance or token):
        raise ValidationError(
            "AutoScalingGroupName, LifecycleHookName and InstanceId or LifecycleActionToken are required"
        )
    if f"{group}_{hook}" not in self.autoscaling_backend.lifecycle_hooks:
        raise ValidationError(f"No Lifecycle Hook named {hook} found in Auto Scaling group {group}")
    for (region, g, i), action in _waiting.items():
        if region != self.region or g != group or action["hook"] != hook:
            continue
        if (instance and i == instance) or (token and action["token"] == token):
            return (region, g, i), action
    if instance:
        raise ValidationError(f"No active Lifecycle Action found with instance ID {instance}")
    raise ValidationError(f"No active Lifecycle Action found with token {token}")


def _recorded(self, action, key, result=None):
    _record.append(
        {
            "action": action,
            "group": key[1],
            "instance": key[2],
            "hook": self._get_param("LifecycleHookName"),
            "result": result,
            "by": "token" if self._get_param("LifecycleActionToken") else "instance",
            "time_ms": int(time.time() * 1000),
        }
    )


def complete_lifecycle_action(self):
    result = self._get_param("LifecycleActionResult")
    if result not in ("CONTINUE", "ABANDON"):
        raise ValidationError("LifecycleActionResult must be CONTINUE or ABANDON")
    with _lock:
        if _faults["throttle"] > 0:
            _faults["throttle"] -= 1
            _faults["throttled"] += 1
            raise Throttling()
        key, action = _waiting_action(self)
        del _waiting[key]
        state = _instance_state(self.autoscaling_backend, key[1], key[2])
        if state is not None:
            state.lifecycle_state = _NEXT_STATE[(action["transition"], result)]
        _recorded(self, "CompleteLifecycleAction", key, result)
    return EmptyResult()


def record_lifecycle_action_heartbeat(self):
    with _lock:
        key, _ = _waiting_action(self)
        _recorded(self, "RecordLifecycleActionHeartbeat", key)
    return EmptyResult()


AutoScalingResponse.complete_lifecycle_action = complete_lifecycle_action
AutoScalingResponse.record_lifecycle_action_heartbeat = record_lifecycle_action_heartbeat


def _lifecycle_endpoint(request, full_url, headers):
    """Test-only: POST {"group", "instance", "hook", "transition", "region"?} puts the instance in
    the hook's wait state; GET returns the calls accepted and the instances' states."""
    if request.method == "POST":
        body = json.loads(request.data or b"{}")
        if "throttle" in body:
            with _lock:
                _faults["throttle"] = int(body["throttle"])
            return 200, {}, json.dumps({"throttle": _faults["throttle"]})
        region = body.get("region", "us-east-1")
        transition = body["transition"]
        backend = autoscaling_backends[DEFAULT_ACCOUNT_ID][region]
        with _lock:
            state = _instance_state(backend, body["group"], body["instance"])
            if state is None:
                return 400, {}, json.dumps({"error": "no such instance in that group"})
            token = str(uuid.uuid4())
            _waiting[(region, body["group"], body["instance"])] = {
                "hook": body["hook"],
                "transition": transition,
                "token": token,
            }
            state.lifecycle_state = _WAIT_STATE[transition]
        return 200, {}, json.dumps({"token": token})
    backend = autoscaling_backends[DEFAULT_ACCOUNT_ID][request.args.get("region", "us-east-1")]
    with _lock:
        states = {}
        for group in backend.autoscaling_groups.values():
            for s in group.instance_states:
                states[s.instance.id] = s.lifecycle_state
        waiting = [
            {"region": k[0], "group": k[1], "instance": k[2], **v} for k, v in _waiting.items()
        ]
        return 200, {}, json.dumps(
            {"record": _record, "waiting": waiting, "states": states, "throttled": _faults["throttled"]}
        )


moto_api_urls.url_paths["{0}/moto-api/kiln/lifecycle"] = _lifecycle_endpoint

if __name__ == "__main__":
    main(sys.argv[1:])
