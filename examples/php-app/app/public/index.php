<?php
// The kiln example page: plain text, one fact per line, easy to read for people and tests.
// It shows only the variables below; never print the environment wholesale (it holds secrets).
declare(strict_types=1);

header('Content-Type: text/plain; charset=utf-8');

$greeting = getenv('GREETING');
echo 'greeting: ', $greeting === false ? '(GREETING is not set)' : $greeting, "\n";
$appEnv = getenv('APP_ENV');
echo 'app_env: ', $appEnv === false ? '(APP_ENV is not set)' : $appEnv, "\n";

// Instance facts, present once kiln fetched them from the cloud's metadata service.
foreach (['KILN_INSTANCE_ID' => 'instance_id', 'KILN_PROVIDER' => 'provider'] as $name => $label) {
    $value = getenv($name);
    if ($value !== false && $value !== '') {
        echo $label, ': ', $value, "\n";
    }
}
echo 'php_pid: ', getmypid(), "\n";
