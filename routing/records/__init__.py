"""What voffice records reaches people: the call history in PostgreSQL and the notifications
(email, signed webhooks), both fed by the `voffice:events` stream through consumer groups."""
