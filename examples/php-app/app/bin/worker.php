<?php
// Queue worker of the kiln example: "processes a job" every WORKER_INTERVAL seconds (default 3),
// logs one short line per job, and on SIGTERM or SIGINT finishes the job in hand and exits 0.
// WORKER_JOB_SECONDS (default 0: instant) makes each job take that long, logged as "started job N"
// and "finished job N": a stop signal during a job waits for the job to finish.
// WORKER_FAIL=1 makes it exit 1 at once (crash-loop tests).
declare(strict_types=1);

$pid = getmypid();

if (getenv('WORKER_FAIL') === '1') {
    fwrite(STDERR, "worker[$pid]: WORKER_FAIL=1, exiting with 1\n");
    exit(1);
}

$interval = (float) (getenv('WORKER_INTERVAL') ?: 3);
if ($interval <= 0) {
    fwrite(STDERR, "worker[$pid]: WORKER_INTERVAL must be a positive number of seconds\n");
    exit(2);
}

pcntl_async_signals(true);
$stopSignal = null;
foreach ([SIGTERM => 'SIGTERM', SIGINT => 'SIGINT'] as $signal => $name) {
    pcntl_signal($signal, function () use (&$stopSignal, $name): void {
        $stopSignal = $name;
    });
}

$jobSeconds = (float) (getenv('WORKER_JOB_SECONDS') ?: 0);

fwrite(STDOUT, "worker[$pid]: started, one job every {$interval}s\n");
$jobs = 0;
while ($stopSignal === null) {
    $jobs++;
    if ($jobSeconds > 0) {
        fwrite(STDOUT, "worker[$pid]: started job $jobs\n");
        // The job runs to its end whatever signal comes meanwhile.
        $done = microtime(true) + $jobSeconds;
        while (($left = $done - microtime(true)) > 0) {
            time_nanosleep((int) $left, (int) (fmod($left, 1.0) * 1e9));
        }
        fwrite(STDOUT, "worker[$pid]: finished job $jobs\n");
    } else {
        fwrite(STDOUT, "worker[$pid]: processed job $jobs\n");
    }
    // Sleep until the next job; a signal cuts the sleep short and the loop condition sees it.
    $until = microtime(true) + $interval;
    while ($stopSignal === null && ($left = $until - microtime(true)) > 0) {
        time_nanosleep((int) $left, (int) (fmod($left, 1.0) * 1e9));
    }
}
fwrite(STDOUT, "worker[$pid]: $stopSignal received, stopping after $jobs jobs\n");
exit(0);
