"""One scenario for every command type of the catalog, run with fakes and on the real database.

`CATALOG_SCENARIOS[CommandType](driver)` brings about, through commands, the state the
command needs, and returns the command with the events it must cause when `processed`.
A command type added to the catalog without a scenario here fails
`tests/unit/test_catalog_scenarios.py` and `tests/integration/test_every_command_type.py`.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, TypeAlias

from events import Actor, catalog
from events.approval import AutoApprovePlan, RemindApprovers, RequestApproval, RequestApprovals
from events.notification import (
    NotificationChannel,
    RecordNotificationDelivered,
    RecordNotificationFailed,
    SendNotification,
)
from events.persona import RegisterPersona, RetirePersona, UpdatePersona
from events.plan import (
    AiStep,
    ApprovePlan,
    DraftPlan,
    EditPlan,
    ExpirePlan,
    HumanStep,
    RejectPlan,
    SubmitPlan,
    WithdrawPlan,
)
from events.project import (
    AddProjectMember,
    ApprovalPolicy,
    ChangeApprovalPolicy,
    CreateProject,
    RemoveProjectMember,
)
from events.task import (
    CancelTask,
    CompleteTask,
    FailTask,
    QueueTask,
    ReopenTask,
    RetryTask,
    StartTask,
    WarnTaskTimeLimit,
)
from events.workflow import (
    BeginExecution,
    BeginReview,
    CancelWorkflow,
    CompleteWorkflow,
    FailWorkflow,
    RequestRevision,
    StartWorkflow,
    WorkflowStarted,
)
from tests.command_scenarios import ACTOR, processed

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from events import Command
    from tests.command_scenarios import CommandDriver

Expected: TypeAlias = "tuple[Command, tuple[str, ...]]"
Scenario: TypeAlias = "Callable[[CommandDriver], Awaitable[Expected]]"
APPROVER = ACTOR.principal  # the owner of the scenarios' projects approves and works the tasks
SYSTEM = Actor.system("scenarios")


def _policy(deadline: timedelta | None = None) -> ApprovalPolicy:
    return ApprovalPolicy(approvers=(APPROVER,), required_approvals=1, approval_deadline=deadline)


def _register(persona_id: uuid.UUID) -> RegisterPersona:
    return RegisterPersona(
        persona_id=persona_id,
        name="Aiko",
        role="writer",
        provider="fake",
        model="fake-1",
        system_prompt="Write well.",
    )


def _step() -> HumanStep:
    return HumanStep(step_id=uuid.uuid4(), title="Review", assignee=APPROVER, instructions="Read")


async def _persona(driver: CommandDriver) -> uuid.UUID:
    persona_id = uuid.uuid4()
    await processed(driver, _register(persona_id))
    return persona_id


async def _project(driver: CommandDriver, deadline: timedelta | None = None) -> uuid.UUID:
    project_id = uuid.uuid4()
    await processed(
        driver, CreateProject(project_id=project_id, name="P", policy=_policy(deadline))
    )
    return project_id


async def _draft(driver: CommandDriver, deadline: timedelta | None = None) -> uuid.UUID:
    plan_id, project_id = uuid.uuid4(), await _project(driver, deadline)
    await processed(
        driver, DraftPlan(plan_id=plan_id, project_id=project_id, title="T", steps=(_step(),))
    )
    return plan_id


async def _submitted(driver: CommandDriver, deadline: timedelta | None = None) -> uuid.UUID:
    plan_id = await _draft(driver, deadline)
    await processed(driver, SubmitPlan(plan_id=plan_id))
    return plan_id


async def _approved(driver: CommandDriver) -> uuid.UUID:
    plan_id = await _submitted(driver)
    await processed(driver, ApprovePlan(plan_id=plan_id))
    return plan_id


async def _workflow(driver: CommandDriver) -> tuple[uuid.UUID, uuid.UUID]:
    """A started workflow (planning) of a one-step plan, and its task (pending)."""
    workflow_id = uuid.uuid4()
    started = await processed(
        driver, StartWorkflow(workflow_id=workflow_id, plan_id=await _approved(driver))
    )
    workflow = started[1].data  # after the plan's PlanWorkflowStarted
    assert isinstance(workflow, WorkflowStarted)
    return workflow_id, workflow.task_ids[0]


async def _executing(driver: CommandDriver) -> tuple[uuid.UUID, uuid.UUID]:
    """A workflow in execution, and its task (queued)."""
    workflow_id, task_id = await _workflow(driver)
    await processed(driver, BeginExecution(workflow_id=workflow_id))
    return workflow_id, task_id


async def _running(driver: CommandDriver) -> uuid.UUID:
    task_id = (await _executing(driver))[1]
    await processed(driver, StartTask(task_id=task_id, worker=APPROVER))
    return task_id


async def _completed(driver: CommandDriver) -> tuple[uuid.UUID, uuid.UUID]:
    workflow_id, task_id = await _executing(driver)
    await processed(driver, StartTask(task_id=task_id, worker=APPROVER))
    await processed(driver, CompleteTask(task_id=task_id, output="done"))
    return workflow_id, task_id


async def _in_review(driver: CommandDriver) -> tuple[uuid.UUID, uuid.UUID]:
    workflow_id, task_id = await _completed(driver)
    await processed(driver, BeginReview(workflow_id=workflow_id))
    return workflow_id, task_id


async def register_persona(driver: CommandDriver) -> Expected:
    return _register(uuid.uuid4()), ("PersonaRegistered",)


async def update_persona(driver: CommandDriver) -> Expected:
    return UpdatePersona(persona_id=await _persona(driver), role="editor"), ("PersonaUpdated",)


async def retire_persona(driver: CommandDriver) -> Expected:
    return RetirePersona(persona_id=await _persona(driver), reason="done"), ("PersonaRetired",)


async def create_project(driver: CommandDriver) -> Expected:
    command = CreateProject(project_id=uuid.uuid4(), name="P", policy=_policy())
    return command, ("ProjectCreated",)


async def change_approval_policy(driver: CommandDriver) -> Expected:
    changed = _policy().model_copy(update={"approvers": (APPROVER, "key:bob")})
    command = ChangeApprovalPolicy(project_id=await _project(driver), policy=changed)
    return command, ("ApprovalPolicyChanged",)


async def add_project_member(driver: CommandDriver) -> Expected:
    command = AddProjectMember(project_id=await _project(driver), member="key:bob")
    return command, ("ProjectMemberAdded",)


async def remove_project_member(driver: CommandDriver) -> Expected:
    project_id = await _project(driver)
    await processed(driver, AddProjectMember(project_id=project_id, member="key:bob"))
    return RemoveProjectMember(project_id=project_id, member="key:bob"), ("ProjectMemberRemoved",)


async def draft_plan(driver: CommandDriver) -> Expected:
    persona_id, project_id = await _persona(driver), await _project(driver)
    step = AiStep(step_id=uuid.uuid4(), title="Draft", persona_id=persona_id, input="Write it")
    command = DraftPlan(plan_id=uuid.uuid4(), project_id=project_id, title="T", steps=(step,))
    return command, ("PlanDrafted",)


async def edit_plan(driver: CommandDriver) -> Expected:
    return EditPlan(plan_id=await _draft(driver), title="T2"), ("PlanEdited",)


async def submit_plan(driver: CommandDriver) -> Expected:
    return SubmitPlan(plan_id=await _draft(driver)), ("PlanSubmitted",)


async def approve_plan(driver: CommandDriver) -> Expected:
    command = ApprovePlan(plan_id=await _submitted(driver))
    return command, ("PlanApprovalRecorded", "PlanApproved")


async def reject_plan(driver: CommandDriver) -> Expected:
    command = RejectPlan(plan_id=await _submitted(driver), reason="no")
    return command, ("PlanRejected",)


async def request_approvals(driver: CommandDriver) -> Expected:
    return RequestApprovals(plan_id=await _submitted(driver)), ("ApprovalRequested",)


async def request_approval(driver: CommandDriver) -> Expected:
    command = RequestApproval(plan_id=await _submitted(driver), approver="key:dee")
    return command, ("ApprovalRequested",)


async def remind_approvers(driver: CommandDriver) -> Expected:
    return RemindApprovers(plan_id=await _submitted(driver), reminder=1), ("ApprovalReminderDue",)


async def auto_approve_plan(driver: CommandDriver) -> Expected:
    command = AutoApprovePlan(plan_id=await _submitted(driver), rule="small plans pass")
    return command, ("PlanApproved",)


async def expire_plan(driver: CommandDriver) -> Expected:
    # A deadline of one millisecond has passed by the time the next command is decided.
    plan_id = await _submitted(driver, deadline=timedelta(milliseconds=1))
    return ExpirePlan(plan_id=plan_id), ("PlanExpired",)


async def withdraw_plan(driver: CommandDriver) -> Expected:
    return WithdrawPlan(plan_id=await _draft(driver), reason="later"), ("PlanWithdrawn",)


async def send_notification(driver: CommandDriver) -> Expected:
    await driver.register_person(APPROVER)
    command = SendNotification(
        notification_id=uuid.uuid4(),
        channel=NotificationChannel.IN_APP,
        recipient=APPROVER,
        subject="Hi",
        body="Hello",
    )
    return command, ("NotificationRequested",)


async def _requested(driver: CommandDriver) -> uuid.UUID:
    command, _ = await send_notification(driver)
    await processed(driver, command, actor=SYSTEM)
    assert isinstance(command, SendNotification)
    return command.notification_id


async def record_notification_delivered(driver: CommandDriver) -> Expected:
    command = RecordNotificationDelivered(notification_id=await _requested(driver), attempts=1)
    return command, ("NotificationDelivered",)


async def record_notification_failed(driver: CommandDriver) -> Expected:
    notification_id = await _requested(driver)
    command = RecordNotificationFailed(notification_id=notification_id, attempts=5, error="503")
    return command, ("NotificationFailed",)


async def start_workflow(driver: CommandDriver) -> Expected:
    command = StartWorkflow(workflow_id=uuid.uuid4(), plan_id=await _approved(driver))
    return command, ("PlanWorkflowStarted", "WorkflowStarted", "TaskCreated")


async def begin_execution(driver: CommandDriver) -> Expected:
    workflow_id = (await _workflow(driver))[0]
    return BeginExecution(workflow_id=workflow_id), ("WorkflowPhaseChanged", "TaskQueued")


async def begin_review(driver: CommandDriver) -> Expected:
    workflow_id = (await _completed(driver))[0]
    return BeginReview(workflow_id=workflow_id), ("WorkflowPhaseChanged",)


async def request_revision(driver: CommandDriver) -> Expected:
    workflow_id, task_id = await _in_review(driver)
    command = RequestRevision(workflow_id=workflow_id, task_ids=(task_id,), reason="again")
    return command, ("WorkflowRevisionRequested", "TaskReopened", "TaskQueued")


async def complete_workflow(driver: CommandDriver) -> Expected:
    workflow_id = (await _in_review(driver))[0]
    return CompleteWorkflow(workflow_id=workflow_id), ("WorkflowCompleted",)


async def cancel_workflow(driver: CommandDriver) -> Expected:
    workflow_id = (await _workflow(driver))[0]
    return CancelWorkflow(workflow_id=workflow_id, reason="stop"), (
        "WorkflowCancelled",
        "TaskCancelled",
    )


async def queue_task(driver: CommandDriver) -> Expected:
    return QueueTask(task_id=(await _workflow(driver))[1]), ("TaskQueued",)


async def start_task(driver: CommandDriver) -> Expected:
    return StartTask(task_id=(await _executing(driver))[1], worker=APPROVER), ("TaskStarted",)


async def complete_task(driver: CommandDriver) -> Expected:
    return CompleteTask(task_id=await _running(driver), output="done"), ("TaskCompleted",)


async def fail_task(driver: CommandDriver) -> Expected:
    return FailTask(task_id=await _running(driver), error="broke"), ("TaskFailed",)


async def retry_task(driver: CommandDriver) -> Expected:
    task_id = await _running(driver)
    await processed(driver, FailTask(task_id=task_id, error="broke"))
    return RetryTask(task_id=task_id), ("TaskRetried", "TaskQueued")


async def fail_workflow(driver: CommandDriver) -> Expected:
    workflow_id, task_id = await _executing(driver)
    for attempt in (1, 2, 3):  # the default three attempts, all failed
        await processed(driver, StartTask(task_id=task_id, worker=APPROVER))
        await processed(driver, FailTask(task_id=task_id, error="broke", attempt=attempt))
        if attempt < 3:
            await processed(driver, RetryTask(task_id=task_id), actor=SYSTEM)
    command = FailWorkflow(workflow_id=workflow_id, task_id=task_id, reason="task failed")
    return command, ("WorkflowFailed",)


async def warn_task_time_limit(driver: CommandDriver) -> Expected:
    command = WarnTaskTimeLimit(task_id=await _running(driver), attempt=1)
    return command, ("TaskTimeLimitApproaching",)


async def cancel_task(driver: CommandDriver) -> Expected:
    return CancelTask(task_id=(await _executing(driver))[1], reason="stop"), ("TaskCancelled",)


async def reopen_task(driver: CommandDriver) -> Expected:
    task_id = (await _completed(driver))[1]
    return ReopenTask(task_id=task_id, feedback="again"), ("TaskReopened",)


CATALOG_SCENARIOS: dict[type[Command], Scenario] = {
    RegisterPersona: register_persona,
    UpdatePersona: update_persona,
    RetirePersona: retire_persona,
    CreateProject: create_project,
    ChangeApprovalPolicy: change_approval_policy,
    AddProjectMember: add_project_member,
    RemoveProjectMember: remove_project_member,
    DraftPlan: draft_plan,
    EditPlan: edit_plan,
    SubmitPlan: submit_plan,
    ApprovePlan: approve_plan,
    RejectPlan: reject_plan,
    RequestApprovals: request_approvals,
    RequestApproval: request_approval,
    RemindApprovers: remind_approvers,
    AutoApprovePlan: auto_approve_plan,
    ExpirePlan: expire_plan,
    WithdrawPlan: withdraw_plan,
    SendNotification: send_notification,
    RecordNotificationDelivered: record_notification_delivered,
    RecordNotificationFailed: record_notification_failed,
    StartWorkflow: start_workflow,
    BeginExecution: begin_execution,
    BeginReview: begin_review,
    RequestRevision: request_revision,
    CompleteWorkflow: complete_workflow,
    CancelWorkflow: cancel_workflow,
    FailWorkflow: fail_workflow,
    QueueTask: queue_task,
    StartTask: start_task,
    CompleteTask: complete_task,
    FailTask: fail_task,
    RetryTask: retry_task,
    WarnTaskTimeLimit: warn_task_time_limit,
    CancelTask: cancel_task,
    ReopenTask: reopen_task,
}


async def run_catalog_scenario(driver: CommandDriver, command_type: type[Command]) -> None:
    """Run the scenario of `command_type`: the command is processed with its events."""
    scenario = CATALOG_SCENARIOS.get(command_type)
    assert scenario is not None, (
        f"no scenario for {command_type.__name__}: add one to tests/catalog_scenarios.py"
    )
    command, expected = await scenario(driver)
    assert type(command) is command_type
    actor = SYSTEM if catalog.entry_for(command).system_only else ACTOR
    events = await processed(driver, command, actor=actor)
    assert tuple(event.type for event in events) == expected
