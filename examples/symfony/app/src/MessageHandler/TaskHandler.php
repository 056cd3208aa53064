<?php
declare(strict_types=1);

namespace App\MessageHandler;

use App\Message\Task;
use Symfony\Component\Messenger\Attribute\AsMessageHandler;

/**
 * Handles a Task in a worker (`messenger:consume async`): one line when it starts, one when it is
 * done, on stdout (kiln forwards it to its log, tagged with the worker's name). A stop signal
 * during the work waits for it: the worker stops after the message in hand.
 */
#[AsMessageHandler]
final class TaskHandler
{
    public function __invoke(Task $task): void
    {
        $pid = getmypid();
        if ($task->seconds > 0) {
            self::say("pid $pid started task {$task->id}");
            // Signals (SIGTERM) cut a sleep short: sleep again until the work's time is over.
            $done = microtime(true) + $task->seconds;
            while (($left = $done - microtime(true)) > 0) {
                time_nanosleep((int) $left, (int) (fmod($left, 1.0) * 1e9));
            }
        }
        self::say("pid $pid handled task {$task->id}: {$task->text}");
    }

    private static function say(string $line): void
    {
        // STDOUT is there in a CLI worker; a Task handled inside php-fpm (sync) writes nowhere.
        if (\defined('STDOUT')) {
            fwrite(STDOUT, $line . "\n");
        }
    }
}
