<?php
declare(strict_types=1);

namespace App;

use Symfony\Bundle\FrameworkBundle\Kernel\MicroKernelTrait;
use Symfony\Component\HttpKernel\Kernel as BaseKernel;

/** The app's kernel: config/packages/*.yaml, config/services.yaml, routes from attributes. */
final class Kernel extends BaseKernel
{
    use MicroKernelTrait;

    /** There is no composer.json to find the project by: the project is this file's parent. */
    public function getProjectDir(): string
    {
        return \dirname(__DIR__);
    }
}
