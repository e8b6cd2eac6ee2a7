module openfl-transport/examples

go 1.19

require openfl-transport/openfl v0.0.0

replace openfl-transport/openfl => ../../bindings/go
