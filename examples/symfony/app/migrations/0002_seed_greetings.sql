-- A row for the first table.
INSERT INTO greetings (text) VALUES ('hello');
