<?php
// The bundles the kernel loads, in every environment.
return [
    Symfony\Bundle\FrameworkBundle\FrameworkBundle::class => ['all' => true],
];
