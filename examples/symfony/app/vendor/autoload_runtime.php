<?php
// What symfony/runtime's Composer plugin would generate as vendor/autoload_runtime.php: the front
// controllers (public/index.php, bin/console) return a closure, and Symfony's runtime boots the
// environment (Dotenv::bootEnv: .env.local.php if present, else .env; real environment variables
// win over both), calls the closure and runs what it returns.
declare(strict_types=1);

if (true === (require_once __DIR__ . '/autoload.php') || empty($_SERVER['SCRIPT_FILENAME'])) {
    return;
}

$app = require $_SERVER['SCRIPT_FILENAME'];
if (!is_object($app)) {
    throw new TypeError(sprintf('%s must return a closure, it returned %s', $_SERVER['SCRIPT_FILENAME'], get_debug_type($app)));
}

$runtime = new Symfony\Component\Runtime\SymfonyRuntime(['project_dir' => dirname(__DIR__)]);
[$app, $args] = $runtime->getResolver($app)->resolve();
exit($runtime->getRunner($app(...$args))->run());
