<?php
declare(strict_types=1);

namespace App\Controller;

use App\Message\Task;
use Symfony\Component\HttpFoundation\Request;
use Symfony\Component\HttpFoundation\Response;
use Symfony\Component\Messenger\MessageBusInterface;
use Symfony\Component\Routing\Annotation\Route;

/**
 * The example's pages, plain text, one fact a line (easy to read for people and tests). They
 * show only the values below: never the environment wholesale, never a secret.
 */
final class PageController
{
    public function __construct(
        private readonly ?string $greeting,
        private readonly string $appSecret,
        private readonly ?string $instanceId,
        private readonly string $appEnv,
    ) {
    }

    #[Route('/', name: 'home', methods: ['GET'])]
    public function home(): Response
    {
        $lines = [
            'greeting: ' . ($this->greeting ?? '(GREETING is not set)'),
            'app_env: ' . $this->appEnv,
            'instance_id: ' . ($this->instanceId ?? '(not on a kiln instance)'),
            // Proves APP_SECRET arrived without showing it: a prefix of its SHA-256.
            'app_secret_sha256: ' . substr(hash('sha256', $this->appSecret), 0, 12),
        ];

        return self::text(implode("\n", $lines) . "\n");
    }

    /** Queues a Task for the workers: the body is its text, `?seconds=` how long it works. */
    #[Route('/tasks', name: 'queue_task', methods: ['POST'])]
    public function queue(Request $request, MessageBusInterface $bus): Response
    {
        $text = trim($request->getContent());
        if ($text === '' || \strlen($text) > 200 || preg_match('/[^\x20-\x7e]/', $text)) {
            return self::text("the body must be 1 to 200 printable ASCII characters\n", 400);
        }
        $seconds = $request->query->get('seconds', '0');
        if (!is_numeric($seconds) || $seconds < 0 || $seconds > 20) {
            return self::text("seconds must be a number from 0 to 20 (the workers' stop_timeout is 30 s)\n", 400);
        }
        $task = new Task(bin2hex(random_bytes(6)), $text, (float) $seconds);
        $bus->dispatch($task);

        return self::text("queued task {$task->id}\n", 202);
    }

    private static function text(string $body, int $status = 200): Response
    {
        return new Response($body, $status, ['Content-Type' => 'text/plain; charset=utf-8']);
    }
}
