"""Notification channels: what the notification-delivery consumer sends through.

`channel.Channel` is the one protocol of an external channel (`smtp.SmtpChannel`,
`webhook.HttpxWebhookChannel`); the in-app channel is a row in the unit of work
(`infra.db.notification_tables`), so it needs no bracket.
"""
