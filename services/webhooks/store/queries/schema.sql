CREATE SCHEMA webhooks;
