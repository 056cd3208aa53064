<?php
declare(strict_types=1);

namespace App\Command;

use Doctrine\DBAL\Connection;
use Doctrine\DBAL\DriverManager;
use Doctrine\DBAL\Platforms\SqlitePlatform;
use Doctrine\DBAL\Tools\DsnParser;
use Symfony\Component\Console\Attribute\AsCommand;
use Symfony\Component\Console\Command\Command;
use Symfony\Component\Console\Input\InputInterface;
use Symfony\Component\Console\Output\OutputInterface;

/**
 * `app:migrate`: applies the migrations/NNNN_name.sql files not applied yet, in name order, each
 * recorded in the table migration_versions, all in one transaction. Idempotent: a second run
 * applies nothing. A run that applies something appends one line to APP_MIGRATIONS_LOG (a marker
 * that tests count: how many runs really migrated). Errors name the file or the variable, never
 * DATABASE_URL's value (it holds the password).
 */
#[AsCommand(name: 'app:migrate', description: 'Apply the database migrations not applied yet')]
final class MigrateCommand extends Command
{
    private const SCHEMES = ['sqlite' => 'pdo_sqlite', 'mysql' => 'pdo_mysql', 'postgresql' => 'pdo_pgsql'];

    public function __construct(
        private readonly string $databaseUrl,
        private readonly string $migrationsLog,
        private readonly string $migrationsDir,
    ) {
        parent::__construct();
    }

    protected function execute(InputInterface $input, OutputInterface $output): int
    {
        $files = glob($this->migrationsDir . '/[0-9]*.sql') ?: [];
        sort($files, SORT_STRING);
        $db = DriverManager::getConnection((new DsnParser(self::SCHEMES))->parse($this->databaseUrl));
        $this->lock($db);
        try {
            $applied = $this->apply($db, $files);
            $db->executeStatement('COMMIT');
        } catch (\Throwable $e) {
            $db->executeStatement('ROLLBACK');
            throw $e;
        }
        if ($applied === []) {
            $output->writeln(sprintf('app:migrate: nothing to apply (%d migrations, all applied)', \count($files)));

            return Command::SUCCESS;
        }
        $this->mark($applied);
        $output->writeln(sprintf('app:migrate: applied %d: %s', \count($applied), implode(', ', $applied)));

        return Command::SUCCESS;
    }

    /**
     * Opens the transaction, holding the database's write lock from the start: a second app:migrate
     * running at the same time waits, then finds everything applied.
     */
    private function lock(Connection $db): void
    {
        $db->executeStatement(
            'CREATE TABLE IF NOT EXISTS migration_versions (version VARCHAR(191) PRIMARY KEY, applied_at VARCHAR(32) NOT NULL)'
        );
        $begin = $db->getDatabasePlatform() instanceof SqlitePlatform ? 'BEGIN IMMEDIATE' : 'BEGIN';
        $db->executeStatement($begin);
    }

    /** @return list<string> the versions applied now */
    private function apply(Connection $db, array $files): array
    {
        $done = array_flip($db->fetchFirstColumn('SELECT version FROM migration_versions'));
        $applied = [];
        foreach ($files as $file) {
            $version = basename($file, '.sql');
            if (isset($done[$version])) {
                continue;
            }
            $sql = file_get_contents($file);
            if ($sql === false) {
                throw new \RuntimeException("app:migrate: cannot read $file");
            }
            try {
                $db->executeStatement($sql);
            } catch (\Throwable $e) {
                throw new \RuntimeException("app:migrate: $file failed: " . $e->getMessage(), 0, $e);
            }
            $db->insert('migration_versions', ['version' => $version, 'applied_at' => gmdate('c')]);
            $applied[] = $version;
        }

        return $applied;
    }

    /** @param list<string> $applied */
    private function mark(array $applied): void
    {
        $line = sprintf("%s applied %s (host %s, pid %d)\n", gmdate('c'), implode(',', $applied), gethostname(), getmypid());
        if (file_put_contents($this->migrationsLog, $line, FILE_APPEND | LOCK_EX) === false) {
            throw new \RuntimeException("app:migrate: applied, but cannot append to APP_MIGRATIONS_LOG ($this->migrationsLog)");
        }
    }
}
