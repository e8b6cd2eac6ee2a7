module openfl-transport/openfl

go 1.19
