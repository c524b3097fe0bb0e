"""The notification rules, as data: which event tells whom, on which channels, how urgently.

One rule per event type. A rule names its recipients by a resolver (`consumers.notification`
holds the resolvers: the event's own principal fields, or state read through the unit of
work), optionally a condition on the event, its default channels, its priority, and the
subject and body as `str.format` templates over the event's fields (`{title}`,
`{step[title]}`; a missing value reads as "—"). Rules never hold contact points: recipients
are principal ids, and the people directory supplies the address only at delivery time.

Applied by the consumer to every rule: the person's preferences switch channels off and
set a minimum priority; nobody is told about their own action (the event's actor is never
a recipient); `system:` and `persona:` principals are not people and are never notified.
`hisho notifications rules` prints this table; docs/notifications.md explains each choice.
"""

from __future__ import annotations

from dataclasses import dataclass

from events.notification import NotificationChannel, NotificationPriority

IN_APP, EMAIL, CHAT = (
    NotificationChannel.IN_APP,
    NotificationChannel.EMAIL,
    NotificationChannel.CHAT_WEBHOOK,
)
LOW, NORMAL, HIGH = NotificationPriority.LOW, NotificationPriority.NORMAL, NotificationPriority.HIGH
EVERY_CHANNEL = (IN_APP, EMAIL, CHAT)


@dataclass(frozen=True)
class Rule:
    """Event `event` notifies `recipients` (a resolver) on `channels` at `priority`."""

    event: str  # a catalog event type
    recipients: str  # a resolver of `consumers.notification.RESOLVERS`
    channels: tuple[NotificationChannel, ...]
    priority: NotificationPriority
    subject: str  # str.format template over the event's fields
    body: str
    why: str  # what the recipient does with it
    when: str | None = None  # a condition of `consumers.notification.CONDITIONS`, or always


RULES: tuple[Rule, ...] = (
    # Approval: whoever must vote, and the submitter of the outcome.
    Rule(
        "ApprovalRequested",
        "approver",
        EVERY_CHANNEL,
        HIGH,
        "Approval requested: {title}",
        "Plan {title} waits for your vote (deadline: {deadline}).",
        "the approver must vote before the deadline",
    ),
    Rule(
        "ApprovalReminderDue",
        "pending",
        EVERY_CHANNEL,
        HIGH,
        "Reminder: approval pending for {title}",
        "Plan {title} still waits for your vote (deadline: {deadline}).",
        "the approvers who have not voted, before the plan expires",
    ),
    Rule(
        "PlanApprovalRecorded",
        "plan_submitter",
        (IN_APP,),
        LOW,
        "Approval recorded: {title}",
        "{approver} approved plan {title} ({approvals} of {required_approvals}).",
        "the submitter follows the vote; the decision itself comes as PlanApproved",
    ),
    Rule(
        "PlanApproved",
        "submitted_by",
        (IN_APP, EMAIL),
        NORMAL,
        "Plan approved: {title}",
        "Your plan {title} was approved; its workflow starts.",
        "the submitter's plan goes ahead",
    ),
    Rule(
        "PlanRejected",
        "submitted_by",
        (IN_APP, EMAIL),
        NORMAL,
        "Plan rejected: {title}",
        "{approver} rejected your plan {title}: {reason}",
        "the submitter may rework the plan",
    ),
    Rule(
        "PlanExpired",
        "submitted_by",
        (IN_APP, EMAIL),
        NORMAL,
        "Plan expired: {title}",
        "Your plan {title} reached its approval deadline ({deadline}) undecided.",
        "the submitter may submit it again",
    ),
    Rule(
        "PlanWithdrawn",
        "plan_pending_approvers",
        (IN_APP,),
        LOW,
        "Plan withdrawn: {title}",
        "Plan {title} was withdrawn; your vote is no longer needed (reason: {reason}).",
        "the approvers who were asked and have not voted can stop",
    ),
    Rule(
        "PlanWorkflowStarted",
        "plan_submitter",
        (IN_APP,),
        LOW,
        "Workflow started: {title}",
        "The workflow of your plan {title} started.",
        "the submitter sees the approved plan running (approval itself was told already)",
    ),
    # Tasks: the person who carries a human step out, and the owner when one fails for good.
    Rule(
        "TaskQueued",
        "step_assignee",
        (IN_APP, EMAIL),
        NORMAL,
        "Task for you: {step[title]}",
        "{step[instructions]}\n\nFeedback: {feedback}",
        "the assignee's work can start (again, after a retry or a revision)",
        when="human_step",
    ),
    Rule(
        "TaskTimeLimitApproaching",
        "task_assignee",
        EVERY_CHANNEL,
        HIGH,
        "Time limit approaching",
        "Your task (attempt {attempt}) passed its soft limit of {soft_limit};"
        " it fails at {hard_limit}.",
        "the assignee of a human task finishes or fails it before the hard limit",
    ),
    Rule(
        "TaskCancelled",
        "task_assignee",
        (IN_APP,),
        LOW,
        "Task cancelled",
        "A task of yours was cancelled (reason: {reason}).",
        "the assignee of a human task stops working on it",
    ),
    Rule(
        "TaskFailed",
        "project_owner",
        EVERY_CHANNEL,
        HIGH,
        "Task failed",
        "A task failed after its last attempt ({attempt}): {error}",
        "the owner decides what happens next; a retryable failure is retried by hisho alone",
        when="final_failure",
    ),
    # Workflows: the project's people.
    Rule(
        "WorkflowPhaseChanged",
        "project_members",
        (IN_APP, EMAIL),
        NORMAL,
        "Workflow ready for review",
        "Every task of a workflow is done: review it (complete it or request a revision).",
        "the members review the work",
        when="to_review",
    ),
    Rule(
        "WorkflowCompleted",
        "project_members",
        (IN_APP, EMAIL),
        NORMAL,
        "Workflow completed",
        "A workflow of your project was completed after {revisions} revision(s).",
        "the members learn the work is done",
    ),
    Rule(
        "WorkflowCancelled",
        "project_members",
        (IN_APP,),
        NORMAL,
        "Workflow cancelled",
        "A workflow of your project was cancelled in {from_phase} (reason: {reason}).",
        "the members stop working on it",
    ),
    Rule(
        "WorkflowFailed",
        "project_owner",
        EVERY_CHANNEL,
        HIGH,
        "Workflow failed",
        "A workflow of your project failed: {reason}",
        "the owner decides what happens next",
    ),
    # Projects: the person who joins or leaves.
    Rule(
        "ProjectMemberAdded",
        "member",
        (IN_APP,),
        LOW,
        "You joined a project",
        "You are now a member of project {project_id}.",
        "the new member sees the project's plans and workflows",
    ),
    Rule(
        "ProjectMemberRemoved",
        "member",
        (IN_APP,),
        LOW,
        "You left a project",
        "You are no longer a member of project {project_id}.",
        "the former member knows why the project is gone from their view",
    ),
)

RULES_BY_EVENT = {rule.event: rule for rule in RULES}
