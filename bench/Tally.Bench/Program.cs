using BenchmarkDotNet.Running;

// Run with: dotnet run -c Release --project bench/Tally.Bench -- --filter '*' --job short
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
