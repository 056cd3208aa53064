<?php
declare(strict_types=1);

namespace App\Message;

/** A job for the workers: print `text` after working for `seconds` (0: at once). */
final class Task
{
    public function __construct(
        public readonly string $id,
        public readonly string $text,
        public readonly float $seconds = 0.0,
    ) {
    }
}
