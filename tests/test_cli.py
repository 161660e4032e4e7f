import subprocess
import sys

from igc_keras_cli import main


def test_models_table_prints_measured_and_paper_figures(capsys):
    assert main(["models", "igcv3*"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.startswith("igcv3_")}
    assert set(rows) == {"igcv3_0.7", "igcv3_1.0"}
    # name, measured params (M), paper params, measured MAdds (M), paper MAdds
    assert rows["igcv3_1.0"][1:5] == ["3.492", "3.5M", "313.0", "320M"]
    assert rows["igcv3_0.7"][1:5] == ["2.032", "2.0M", "170.0", "170M"]
    assert "RECONSTRUCTED" in " ".join(rows["igcv3_0.7"])


def test_models_names_only_and_unknown_pattern(capsys):
    assert main(["models", "--names-only", "regconv*"]) == 0
    assert capsys.readouterr().out.split() == [
        "regconv_cifar_w18_d20", "regconv_cifar_w18_d38", "regconv_cifar_w18_d62"]
    assert main(["models", "nothing*"]) == 1


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "igc_keras_cli", "models",
                             "--names-only", "igcv1_l*"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["igcv1_l100m2", "igcv1_l16m16",
                                     "igcv1_l4m32"]
