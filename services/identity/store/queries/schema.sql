CREATE SCHEMA identity;
