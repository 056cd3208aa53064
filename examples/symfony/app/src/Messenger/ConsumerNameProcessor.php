<?php
declare(strict_types=1);

namespace App\Messenger;

use Symfony\Component\DependencyInjection\EnvVarProcessorInterface;
use Symfony\Component\DependencyInjection\Exception\EnvNotFoundException;

/**
 * `%env(consumer_name:KILN_REPLICA)%`: the Redis consumer name of this worker, INSTANCE-REPLICA.
 *
 * Every instance's workers read one stream in one consumer group: each needs a name of its own,
 * or two workers would take each other's pending messages. The same name after a restart (kiln
 * gives replica N the same KILN_REPLICA each time) lets the worker take back the message it had in
 * hand when it died, at once, instead of after the transport's redeliver timeout.
 */
final class ConsumerNameProcessor implements EnvVarProcessorInterface
{
    public function getEnv(string $prefix, string $name, \Closure $getEnv): string
    {
        $instance = self::optional($getEnv, 'KILN_INSTANCE_ID') ?? (gethostname() ?: 'local');
        $replica = self::optional($getEnv, $name) ?? '0';

        return $instance . '-' . $replica;
    }

    public static function getProvidedTypes(): array
    {
        return ['consumer_name' => 'string'];
    }

    private static function optional(\Closure $getEnv, string $name): ?string
    {
        try {
            $value = (string) $getEnv($name);
        } catch (EnvNotFoundException) {
            return null;
        }

        return $value === '' ? null : $value;
    }
}
