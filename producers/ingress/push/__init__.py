"""Live push of in-app notifications: one fan-out per ingress process, SSE and WebSocket routes."""

from producers.ingress.push.hub import PushedNotification, PushHub, Subscription

__all__ = ["PushHub", "PushedNotification", "Subscription"]
