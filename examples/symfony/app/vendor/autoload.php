<?php
// What Composer's vendor/autoload.php would be, made of Debian 12's packages instead: each
// php-symfony-* (and php-doctrine-dbal) package installs an autoload.php under /usr/share/php
// that loads its own classes and its dependencies'. The app's own classes (App\) are in src/.
// No registry is needed to build the release: `apt-get install` the packages listed in
// packaging/dev-setup.sh (the image installs the same ones).
declare(strict_types=1);

foreach ([
    'Symfony/Bundle/FrameworkBundle',
    'Symfony/Component/Console',
    'Symfony/Component/Dotenv',
    'Symfony/Component/Runtime',
    'Symfony/Component/Yaml',
    'Symfony/Component/Messenger',
    'Symfony/Component/Messenger/Bridge/Redis',
    'Doctrine/DBAL',
] as $package) {
    require_once '/usr/share/php/' . $package . '/autoload.php';
}

spl_autoload_register(static function (string $class): void {
    if (str_starts_with($class, 'App\\')) {
        $file = dirname(__DIR__) . '/src/' . str_replace('\\', '/', substr($class, 4)) . '.php';
        if (is_file($file)) {
            require $file;
        }
    }
});
