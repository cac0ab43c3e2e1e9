"""Tests of tf_gtsrb.data.annotations: official and Kaggle CSV parsing, errors naming file+line."""

import pytest

from tf_gtsrb import errors
from tf_gtsrb.data import annotations

HEADER = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"
OFFICIAL = (HEADER + "\n"
            "00012_00029.ppm;40;37;5;6;34;31;3\n"
            "00013_00000.ppm;29;31;4;4;24;26;3\n")
KAGGLE = ("Width,Height,Roi.X1,Roi.Y1,Roi.X2,Roi.Y2,ClassId,Path\n"
          "27,26,5,5,22,20,20,Train/20/00020_00007_00001.png\n"
          "53,54,6,5,48,49,16,Test/00000.png\n")


def test_official_csv_with_class_column():
  rows = annotations.parse_official_csv(OFFICIAL, "GT-00003.csv")
  assert rows == [
      annotations.Annotation("00012_00029.ppm", 40, 37, (5, 6, 34, 31), 3, 12),
      annotations.Annotation("00013_00000.ppm", 29, 31, (4, 4, 24, 26), 3, 13),
  ]


def test_official_csv_without_class_column_takes_the_folder_class():
  text = "\n".join(line.rsplit(";", 1)[0] for line in OFFICIAL.splitlines())
  rows = annotations.parse_official_csv(text, "GT-00007.csv", class_id=7)
  assert [r.class_id for r in rows] == [7, 7]
  assert [r.track_id for r in rows] == [12, 13]


def test_official_csv_without_class_column_and_no_class_given_is_an_error():
  text = "\n".join(line.rsplit(";", 1)[0] for line in OFFICIAL.splitlines())
  with pytest.raises(errors.DataError, match=r"GT-final_test.csv: line 1: .*ClassId"):
    annotations.parse_official_csv(text, "GT-final_test.csv")


def test_class_column_wins_over_the_folder_class():
  rows = annotations.parse_official_csv(OFFICIAL, "GT-00003.csv", class_id=5)
  assert {r.class_id for r in rows} == {3}


@pytest.mark.parametrize("encode", [
    lambda t: t.encode(),
    lambda t: t.replace("\n", "\r\n").encode(),
    lambda t: b"\xef\xbb\xbf" + t.replace("\n", "\r\n").encode(),
    lambda t: "\ufeff" + t,
    lambda t: t.replace("\n", "\n\n"),  # Blank lines are skipped.
], ids=["bytes", "crlf", "bom_crlf", "bom_str", "blank_lines"])
def test_official_csv_encodings_parse_alike(encode):
  expected = annotations.parse_official_csv(OFFICIAL, "a.csv")
  assert annotations.parse_official_csv(encode(OFFICIAL), "a.csv") == expected


def test_official_test_names_have_no_track():
  text = HEADER + "\n00000.ppm;53;54;6;5;48;49;16\n"
  (row,) = annotations.parse_official_csv(text, "GT-final_test.csv")
  assert row.track_id == annotations.NO_TRACK
  assert row.class_id == 16


def test_kaggle_csv():
  rows = annotations.parse_kaggle_csv(KAGGLE.encode(), "Train.csv")
  assert rows[0] == annotations.Annotation(
      "Train/20/00020_00007_00001.png", 27, 26, (5, 5, 22, 20), 20, annotations.NO_TRACK)
  assert rows[1].filename == "Test/00000.png"
  assert rows[1].class_id == 16


def test_kaggle_csv_crlf_and_bom():
  data = b"\xef\xbb\xbf" + KAGGLE.replace("\n", "\r\n").encode()
  assert annotations.parse_kaggle_csv(data, "x") == annotations.parse_kaggle_csv(KAGGLE, "x")


@pytest.mark.parametrize("name, expected", [
    ("00012_00029.ppm", 12),
    ("00000_00000.PPM", 0),
    ("GTSRB/Final_Training/Images/00001/00042_00003.ppm", 42),
    ("00003_00001.png", 3),
    ("00000.ppm", annotations.NO_TRACK),
    ("00001_00002_00003.png", annotations.NO_TRACK),
    ("abc.ppm", annotations.NO_TRACK),
])
def test_track_id_from_filename(name, expected):
  assert annotations.track_id_from_filename(name) == expected


def _one_row(fields):
  """The official header and one row, `00000_00000.ppm;<fields>` (its line 2)."""
  return f"{HEADER}\n00000_00000.ppm;{fields}\n"


# id -> (fields after the file name in the one row, what the line-2 error names).
BAD_ROW = {
    "too_many_fields": ("40;37;5;6;34;31;3;9", "got 9"),
    "non_integer": ("forty;37;5;6;34;31;3", "Width"),
    "float": ("40;37;5.5;6;34;31;3", "Roi.X1"),
    "empty_field": ("40;37;5;6;34;31;", "ClassId"),
    "roi_right_of_image": ("40;37;5;6;41;31;3", "ROI"),
    "roi_below_image": ("40;37;5;6;34;38;3", "ROI"),
    "roi_starts_at_edge": ("40;37;40;6;40;31;3", "ROI"),
    "roi_starts_at_bottom_edge": ("40;37;5;37;34;37;3", "ROI"),
    "roi_negative": ("40;37;-1;6;34;31;3", "ROI"),
    "roi_inverted": ("40;37;30;6;20;31;3", "ROI"),
    "zero_size": ("0;37;0;0;0;0;3", "size"),
    "zero_height": ("40;0;0;0;0;0;3", "size"),
    "class_43": ("40;37;5;6;34;31;43", "ClassId 43"),
    "class_minus_1": ("40;37;5;6;34;31;-1", "ClassId -1"),
}
# id -> fields of a row at the edge of what is valid: accepted, ROI kept as given.
EDGE_ROW = {
    "class_0": "40;37;5;6;34;31;0",
    "class_42": "40;37;5;6;34;31;42",
    "one_pixel_image": "1;1;0;0;1;1;3",
    "roi_is_the_whole_image": "40;37;0;0;40;37;3",
    "roi_of_one_pixel_at_the_far_corner": "40;37;39;36;39;36;3",
    "roi_a_vertical_line": "40;37;5;6;5;31;3",
    "roi_a_horizontal_line": "40;37;5;6;34;6;3",
    "roi_wider_than_the_image_is_tall": "40;20;5;6;30;15;3",
}


@pytest.mark.parametrize("fields", EDGE_ROW.values(), ids=EDGE_ROW.keys())
def test_rows_at_the_edge_of_validity_are_accepted(fields):
  (row,) = annotations.parse_official_csv(_one_row(fields), "GT.csv")
  values = [int(v) for v in fields.split(";")]
  assert (row.width, row.height, row.roi, row.class_id) == (
      values[0], values[1], tuple(values[2:6]), values[6])


def test_a_header_lacking_columns_names_them_and_shows_the_header():
  with pytest.raises(errors.DataError) as raised:
    annotations.parse_official_csv("Filename;Width;Height;Roi.X1;Roi.Y1\n", "GT.csv")
  assert str(raised.value) == ("GT.csv: line 1: header lacks column(s) Roi.X2, Roi.Y2, ClassId (got "
                               "Filename;Width;Height;Roi.X1;Roi.Y1)")


def test_a_field_too_long_for_the_csv_reader_is_a_malformed_csv():
  with pytest.raises(errors.DataError, match=r"^GT.csv: malformed CSV: "):
    annotations.parse_official_csv(_one_row("40;37;5;6;34;31;" + "3" * 200_000), "GT.csv")


# id -> (CSV text, line of the error, what the error names).
BAD_OFFICIAL = {
    "missing_column": ("Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;ClassId\n"
                       "00000_00000.ppm;40;37;5;6;34;3\n", 1, "Roi.Y2"),
    "too_few_fields": (_one_row("40;37;5;6;34;31;3") + "00000_00001.ppm;40;37;5;6;34;31\n", 3,
                       "expected 8 fields, got 7"),
    **{name: (_one_row(fields), 2, what) for name, (fields, what) in BAD_ROW.items()},
    "empty_filename": (HEADER + "\n;40;37;5;6;34;31;3\n", 2, "file name"),
    "error_after_blank_line": (_one_row("40;37;5;6;34;31;3") + "\n"
                               "00000_00001.ppm;40;37;5;6;34;31;x\n", 4, "ClassId"),
}


@pytest.mark.parametrize("text, line, what", BAD_OFFICIAL.values(), ids=BAD_OFFICIAL.keys())
def test_malformed_official_rows_name_file_and_line(text, line, what):
  with pytest.raises(errors.DataError) as raised:
    annotations.parse_official_csv(text, "archive.zip:GT-00003.csv")
  message = str(raised.value)
  assert message.startswith("archive.zip:GT-00003.csv: ")
  assert f"line {line}:" in message
  assert what in message


@pytest.mark.parametrize("data, what", [
    (b"", "empty"),
    (b"\n\r\n  \n", "empty"),
    (HEADER.encode() + b"\n\xff\xfe00000_00000.ppm;40;37;5;6;34;31;3\n", "UTF-8"),
    (HEADER.encode() + b"\n00000_00000.ppm;40\x00;37;5;6;34;31;3\n", "NUL"),
])
def test_unreadable_files_name_the_file(data, what):
  for parse in (lambda d: annotations.parse_official_csv(d, "bad.csv"),
                lambda d: annotations.parse_kaggle_csv(d, "bad.csv")):
    with pytest.raises(errors.DataError, match=what) as raised:
      parse(data)
    assert str(raised.value).startswith("bad.csv: ")


def test_header_only_gives_no_rows():
  assert annotations.parse_official_csv(HEADER + "\n", "a.csv") == []


@pytest.mark.parametrize("text, line, what", [
    ("Width,Height,Roi.X1,Roi.Y1,Roi.X2,Roi.Y2,ClassId\n27,26,5,5,22,20,20\n", 1, "Path"),
    (KAGGLE + "27,26,5,5,22,20,43,Train/43/00043_00000_00000.png\n", 4, "ClassId 43"),
    (KAGGLE + "27,26,5,5,22,20,-1,x.png\n", 4, "ClassId -1"),
    (KAGGLE + "27,26,5,5,22,20,20\n", 4, "fields"),
    (KAGGLE + "27,26,5,5,28,20,20,x.png\n", 4, "ROI"),
    (KAGGLE + "27,26,5,5,22,20,20,\n", 4, "file name"),
    (KAGGLE.replace("27,26", "27,2x"), 2, "Height"),
])
def test_malformed_kaggle_rows_name_file_and_line(text, line, what):
  with pytest.raises(errors.DataError) as raised:
    annotations.parse_kaggle_csv(text, "Train.csv")
  assert str(raised.value).startswith(f"Train.csv: line {line}:")
  assert what in str(raised.value)
